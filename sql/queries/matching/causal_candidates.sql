-- The best match in SAE $sae_b of every feature of SAE $sae_a under method $method on corpus $corpus (a
-- data-free method's run has no corpus), best first: the pairs the causal check chooses from.
SELECT feature AS feature_a, match AS feature_b, score
FROM match_best
WHERE sae = $sae_a AND match_sae = $sae_b AND method = $method AND coalesce(corpus, $corpus) = $corpus
  AND score IS NOT NULL AND NOT isnan(score)
ORDER BY score DESC, feature;
