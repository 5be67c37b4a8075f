-- How many of the corpora $corpora have a match run of ($sae_a, $sae_b, $method).
SELECT count(DISTINCT corpus)
FROM match_runs
WHERE sae_a = $sae_a AND sae_b = $sae_b AND method = $method AND list_contains($corpora, corpus);
