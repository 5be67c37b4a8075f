-- The candidate pairs of match run $run_id from pairs_batch (feature_a, feature_b, score).
INSERT INTO match_pairs SELECT $run_id, feature_a, feature_b, score FROM pairs_batch;
