-- Per causal run and selection ('top': the best matches, 'sample': drawn from the rest): pairs checked,
-- pairs with a position to read, how many agree and how many hold an inert feature, the median scores,
-- and the correlation of the match score with the causal score (do stronger matches act alike more?).
--   SELECT * FROM causal_summary WHERE model_b = 'lua';
CREATE OR REPLACE VIEW causal_summary AS
SELECT model_a, model_b, sae_a, sae_b, corpus, match_method, selected,
       count(*) AS pairs,
       count(*) FILTER (WHERE tokens > 0) AS tested,
       count(*) FILTER (WHERE agrees) AS agreeing,
       count(*) FILTER (WHERE inert_a OR inert_b) AS inert,
       round(median(match_score), 3) AS median_match_score,
       round(median(effect_cosine), 3) AS median_effect_cosine,
       round(median(loss_correlation), 3) AS median_loss_correlation,
       round(median(kl_a), 5) AS median_kl_a,
       round(median(kl_b), 5) AS median_kl_b,
       round(corr(match_score, effect_cosine), 3) AS score_correlation
FROM causal_checks
GROUP BY ALL
ORDER BY model_a, model_b, corpus, match_method, selected DESC;
