-- How many of the corpora $corpora have a run of ($sae_a, $sae_b, $stat).
SELECT count(DISTINCT corpus)
FROM correlation_runs
WHERE sae_a = $sae_a AND sae_b = $sae_b AND stat = $stat AND list_contains($corpora, corpus);
