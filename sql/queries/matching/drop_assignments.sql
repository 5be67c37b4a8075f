-- The one-to-one assignment of ($sae_a, $sae_b) in either orientation, on $corpus (NULL: a weight
-- method), of $method.
DELETE FROM match_assignments
WHERE least(sae_a, sae_b) = least($sae_a, $sae_b) AND greatest(sae_a, sae_b) = greatest($sae_a, $sae_b)
  AND corpus IS NOT DISTINCT FROM $corpus AND method = $method;
