-- Stored examples of $features, in the order of the kinds in $kinds, top bin first.
SELECT feature, tok, kind, act, bin, before, token, after
FROM explanation_samples
WHERE sae = $sae AND corpus = $corpus AND list_contains($features, feature)
ORDER BY feature, list_position($kinds, kind), bin DESC, rank;
