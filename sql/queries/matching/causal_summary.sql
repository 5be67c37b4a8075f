-- causal_summary of the causal run of ($sae_a, $sae_b) on $corpus, one row per selection (top, sample).
SELECT * EXCLUDE (sae_a, sae_b, model_a, model_b, corpus) FROM causal_summary
WHERE sae_a = $sae_a AND sae_b = $sae_b AND corpus = $corpus;
