-- models without the CHECK on kind: kind now references model_kinds. DuckDB cannot drop a CHECK
-- with ALTER TABLE, so the table is rebuilt with the same columns, in the same order, and its rows.
CREATE TEMP TABLE models_before AS SELECT * FROM models;
DROP TABLE models;
CREATE TABLE models (
    name         VARCHAR PRIMARY KEY,
    kind         VARCHAR NOT NULL REFERENCES model_kinds (kind),
    path         VARCHAR NOT NULL,     -- HF model folder (absolute) or hub id
    architecture VARCHAR,              -- e.g. MistralForCausalLM
    tokenizer    VARCHAR,              -- tokenizers.fingerprint
    train_corpus VARCHAR,
    hyperparams  JSON,
    metrics      JSON,                 -- validation loss / accuracy per domain, ...
    created_at   TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO models SELECT * FROM models_before;
DROP TABLE models_before;
