-- correlation_runs without the CHECK on stat: stat now references correlation_stats (rebuilt, rows
-- and run ids kept, as in 024_models.sql).
CREATE TEMP TABLE correlation_runs_before AS SELECT * FROM correlation_runs;
DROP TABLE correlation_runs;
CREATE TABLE correlation_runs (
    id         INTEGER PRIMARY KEY,
    sae_a      VARCHAR NOT NULL,
    sae_b      VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    stat       VARCHAR NOT NULL REFERENCES correlation_stats (stat),
    r_floor    DOUBLE NOT NULL,
    n_tokens   BIGINT NOT NULL,
    n_pairs    BIGINT NOT NULL,        -- stored pairs with r >= r_floor
    seconds    DOUBLE,
    created_at TIMESTAMP DEFAULT current_timestamp,
    UNIQUE (sae_a, sae_b, corpus, stat)
);
INSERT INTO correlation_runs SELECT * FROM correlation_runs_before;
DROP TABLE correlation_runs_before;
