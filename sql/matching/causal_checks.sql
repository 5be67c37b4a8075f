-- Every causally checked feature pair (causal_effects, `featstore causal`) with its SAEs, their models and
-- its verdicts: `agrees` when the two features' ablations change the next-token distribution the same way
-- (effect_cosine at least the causal method's threshold); `inert_a` / `inert_b` when a feature barely moves
-- it where it fires (mean KL under 1e-4 nats), so a match that does nothing shows.
--   SELECT feature_a, feature_b, match_score, effect_cosine, kl_a, kl_b FROM causal_checks WHERE NOT agrees;
CREATE OR REPLACE VIEW causal_checks AS
SELECT r.id AS run_id, r.sae_a, r.sae_b, sa.model AS model_a, sb.model AS model_b, r.corpus,
       e.feature_a, e.feature_b, e.match_method, e.match_score, e.selected, e.tokens, e.tokens_a, e.tokens_b,
       e.effect_cosine, e.loss_correlation, e.loss_change_a, e.loss_change_b, e.kl_a, e.kl_b,
       e.effect_cosine >= m.default_threshold AS agrees, e.kl_a < 1e-4 AS inert_a, e.kl_b < 1e-4 AS inert_b
FROM causal_effects e
JOIN match_runs r ON r.id = e.run_id
JOIN saes sa ON sa.id = r.sae_a
JOIN saes sb ON sb.id = r.sae_b
JOIN match_methods m ON m.name = 'causal';
