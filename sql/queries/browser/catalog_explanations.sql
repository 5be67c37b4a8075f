-- Every stored explanation with its own-explanation score, best scored first per feature.
SELECT sae, feature, corpus, explainer, prompt_version, simulator, score, explanation
FROM feature_explanations
ORDER BY sae, feature, score DESC NULLS LAST, corpus, explainer
