-- Every stored explanation with the model it belongs to and its score on the feature itself
-- (one row per simulator that scored it; score NULL while unscored).
CREATE OR REPLACE VIEW feature_explanations AS
SELECT k.model, e.sae, e.corpus, e.feature, e.explainer, e.prompt_version,
       s.simulator, s.score, e.explanation
FROM explanations e
LEFT JOIN scores s
       ON s.kind = 'self' AND s.sae = e.sae AND s.feature = e.feature AND s.corpus = e.corpus
      AND s.explainer = e.explainer AND s.explainer_version = e.prompt_version
LEFT JOIN saes k ON k.id = e.sae
ORDER BY e.sae, e.corpus, e.feature, e.explainer, s.simulator;
