-- One row per tokenizer, keyed by a fingerprint of its vocabulary and merges: models and corpus
-- slices that share a fingerprint tokenize identically, so their token occurrences can be joined.
CREATE TABLE IF NOT EXISTS tokenizers (
    fingerprint VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,      -- where it was loaded from (folder or hub id)
    vocab_size  INTEGER NOT NULL,
    created_at  TIMESTAMP DEFAULT current_timestamp
);
