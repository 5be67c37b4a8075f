-- The one-to-one assignment of ($sae_a, $sae_b, $corpus, $method) from picked_batch (feature_a, feature_b, score).
INSERT INTO match_assignments SELECT $sae_a, $sae_b, $corpus, $method, feature_a, feature_b, score FROM picked_batch;
