-- Candidate feature pairs of a match run with their score (a cosine or a Jaccard index).
CREATE TABLE IF NOT EXISTS match_pairs (
    run_id    INTEGER NOT NULL,
    feature_a UINTEGER NOT NULL,
    feature_b UINTEGER NOT NULL,
    score     FLOAT NOT NULL
);
