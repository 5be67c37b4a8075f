-- Features whose explanation contains a text (case-insensitive), best scored first.
SELECT model, sae, feature, corpus, score, explanation
FROM feature_explanations
WHERE explanation ILIKE '%' || $text || '%'
ORDER BY score DESC NULLS LAST, sae, feature
LIMIT 200
