-- The match run of ($sae_a, $sae_b) in either orientation, on $corpus (NULL: a weight method), of
-- $method, with its candidate pairs and causal checks.
DELETE FROM causal_effects WHERE run_id IN (
    SELECT id FROM match_runs
    WHERE least(sae_a, sae_b) = least($sae_a, $sae_b) AND greatest(sae_a, sae_b) = greatest($sae_a, $sae_b)
      AND corpus IS NOT DISTINCT FROM $corpus AND method = $method);
DELETE FROM match_pairs WHERE run_id IN (
    SELECT id FROM match_runs
    WHERE least(sae_a, sae_b) = least($sae_a, $sae_b) AND greatest(sae_a, sae_b) = greatest($sae_a, $sae_b)
      AND corpus IS NOT DISTINCT FROM $corpus AND method = $method);
DELETE FROM match_runs
WHERE least(sae_a, sae_b) = least($sae_a, $sae_b) AND greatest(sae_a, sae_b) = greatest($sae_a, $sae_b)
  AND corpus IS NOT DISTINCT FROM $corpus AND method = $method;
