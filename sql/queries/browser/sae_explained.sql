-- The explained features of one SAE with their best score.
SELECT feature, corpus, max(score) AS score, any_value(explanation ORDER BY score DESC NULLS LAST) AS explanation
FROM feature_explanations
WHERE sae = $sae
GROUP BY feature, corpus
ORDER BY score DESC NULLS LAST, feature
