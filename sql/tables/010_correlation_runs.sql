-- Correlation results are materialised: one run per (SAE A, SAE B, corpus, statistic).
CREATE TABLE IF NOT EXISTS correlation_runs (
    id         INTEGER PRIMARY KEY,
    sae_a      VARCHAR NOT NULL,
    sae_b      VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    stat       VARCHAR NOT NULL CHECK (stat IN ('all_tokens', 'cofiring', 'token_type_mean')),
    r_floor    DOUBLE NOT NULL,
    n_tokens   BIGINT NOT NULL,
    n_pairs    BIGINT NOT NULL,        -- stored pairs with r >= r_floor
    seconds    DOUBLE,
    created_at TIMESTAMP DEFAULT current_timestamp,
    UNIQUE (sae_a, sae_b, corpus, stat)
);
