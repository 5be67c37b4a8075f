-- (sae, feature, source_sae, source_feature) already scored with this explainer and simulator.
SELECT sae, feature, source_sae, source_feature
FROM scores
WHERE corpus = $corpus AND explainer = $explainer AND explainer_version = $explainer_version
  AND simulator = $simulator AND simulator_version = $simulator_version;
