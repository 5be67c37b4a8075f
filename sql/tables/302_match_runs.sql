-- One run of a non-correlation match method (match_methods.source 'weights' or 'activations') for a
-- pair of SAEs: corpus is NULL for data-free (weight) methods. Its candidate pairs are in match_pairs.
-- top_k: partners kept per feature on each side; floor: every pair scoring at least this is kept too.
CREATE TABLE IF NOT EXISTS match_runs (
    id         INTEGER PRIMARY KEY,
    sae_a      VARCHAR NOT NULL,
    sae_b      VARCHAR NOT NULL,
    corpus     VARCHAR,
    method     VARCHAR NOT NULL,
    top_k      INTEGER,
    floor      DOUBLE NOT NULL,
    n_pairs    BIGINT NOT NULL,
    seconds    DOUBLE,
    created_at TIMESTAMP DEFAULT current_timestamp
);
