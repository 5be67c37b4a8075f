SELECT id FROM correlation_runs
WHERE sae_a = $sae_a AND sae_b = $sae_b AND corpus = $corpus AND stat = $stat;
