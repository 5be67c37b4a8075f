-- The features of ($sae, $corpus) that $explainer explained with prompt version $version: not asked again.
SELECT feature FROM explanations
WHERE sae = $sae AND corpus = $corpus AND explainer = $explainer AND prompt_version = $version;
