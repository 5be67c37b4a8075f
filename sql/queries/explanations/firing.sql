-- Which of $features fire at least once for $sae on $corpus.
SELECT DISTINCT feature
FROM activations
WHERE sae = $sae AND corpus = $corpus AND act > 0 AND list_contains($features, feature);
