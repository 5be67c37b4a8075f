-- Every feature pair of a run with r >= the run's floor.
CREATE TABLE IF NOT EXISTS correlations (
    run_id    INTEGER NOT NULL,
    feature_a UINTEGER NOT NULL,
    feature_b UINTEGER NOT NULL,
    r         FLOAT NOT NULL
);
