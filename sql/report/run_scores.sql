-- Mean explanation score of each model's explained features (own explanations), as `featstore run`
-- prints it.
CREATE OR REPLACE VIEW run_scores AS
SELECT model, sae, corpus, explainer, simulator, features, round(mean_score, 4) AS mean_score
FROM score_summary
WHERE kind = 'self'
ORDER BY sae, corpus;
