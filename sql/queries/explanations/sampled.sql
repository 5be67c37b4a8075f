-- Which of $features of ($sae, $corpus) already have drawn samples: those are not drawn again.
SELECT DISTINCT feature FROM explanation_samples WHERE sae = $sae AND corpus = $corpus AND list_contains($features, feature);
