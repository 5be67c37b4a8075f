-- The newest prompt version $explainer used on ($sae, $corpus): what a score reads when none is given.
SELECT max(prompt_version) FROM explanations WHERE sae = $sae AND corpus = $corpus AND explainer = $explainer;
