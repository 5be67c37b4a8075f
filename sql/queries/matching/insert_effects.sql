-- The causal_effects rows of match run $run_id, its pairs chosen by $match_method's matches, from effects_batch.
INSERT INTO causal_effects
SELECT $run_id, feature_a, feature_b, $match_method, match_score, selected, tokens, tokens_a, tokens_b,
       effect_cosine, loss_correlation, loss_change_a, loss_change_b, kl_a, kl_b
FROM effects_batch;
