CREATE TABLE IF NOT EXISTS documents (
    corpus   VARCHAR NOT NULL,
    doc_id   INTEGER NOT NULL,         -- 0.. within the corpus, in source order
    n_tokens INTEGER NOT NULL,
    origin   VARCHAR,                  -- file path or row number the text came from
    PRIMARY KEY (corpus, doc_id)
);
