-- One row per evaluation corpus slice. Its token occurrences own the tok range
-- [tok_start, tok_start + n_tokens), so tok is unique across the whole warehouse.
CREATE TABLE IF NOT EXISTS corpora (
    name        VARCHAR PRIMARY KEY,
    source      VARCHAR NOT NULL,      -- what the user pointed at (file, glob, hub id, generator)
    tokenizer   VARCHAR NOT NULL,      -- tokenizers.fingerprint
    n_documents INTEGER NOT NULL,
    n_tokens    BIGINT NOT NULL,
    tok_start   BIGINT NOT NULL,
    meta        JSON,                  -- split, seed, max_tokens, text key, ...
    created_at  TIMESTAMP DEFAULT current_timestamp
);
