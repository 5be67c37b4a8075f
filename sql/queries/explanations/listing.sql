SELECT feature, explanation
FROM explanations
WHERE sae = $sae AND corpus = $corpus AND explainer = $explainer AND list_contains($features, feature)
ORDER BY feature
LIMIT 200;
