-- Every explanation on corpus $corpus by $explainer at prompt version $version, of any SAE (a transfer
-- score simulates one SAE's features from another's explanations).
SELECT sae, feature, explanation FROM explanations
WHERE corpus = $corpus AND explainer = $explainer AND prompt_version = $version;
