CREATE TABLE IF NOT EXISTS models (
    name         VARCHAR PRIMARY KEY,
    kind         VARCHAR NOT NULL CHECK (kind IN ('base', 'finetune', 'merge', 'imported')),
    path         VARCHAR NOT NULL,     -- HF model folder (absolute) or hub id
    architecture VARCHAR,              -- e.g. MistralForCausalLM
    tokenizer    VARCHAR,              -- tokenizers.fingerprint
    train_corpus VARCHAR,
    hyperparams  JSON,
    metrics      JSON,                 -- validation loss / accuracy per domain, ...
    created_at   TIMESTAMP DEFAULT current_timestamp
);
