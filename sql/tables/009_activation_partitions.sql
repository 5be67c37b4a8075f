-- One committed Parquet file of sparse activations (tok, feature, act > 0) per (SAE, corpus).
-- A row here appears only after its file is complete and renamed into place.
CREATE TABLE IF NOT EXISTS activation_partitions (
    sae        VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    path       VARCHAR NOT NULL,       -- absolute path of the Parquet file
    n_rows     BIGINT NOT NULL,
    n_tokens   BIGINT NOT NULL,        -- token occurrences covered (including those with no activation)
    bytes      BIGINT NOT NULL,
    origin     VARCHAR NOT NULL,       -- ingest | import
    written_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sae, corpus)
);
