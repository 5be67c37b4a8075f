-- The $top most frequently firing features of $sae on $corpus (ties: lower feature first).
SELECT feature
FROM activations
WHERE sae = $sae AND corpus = $corpus AND act > 0
GROUP BY feature
ORDER BY count(*) DESC, feature
LIMIT $top;
