-- The explanations of ($sae, $corpus) for a feature viewer, explainer names descending (the viewer keeps
-- the last one it reads per feature: the first explainer in name order).
SELECT feature, explanation, explainer FROM explanations WHERE sae = $sae AND corpus = $corpus ORDER BY explainer DESC;
