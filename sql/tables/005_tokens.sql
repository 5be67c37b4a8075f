-- Every token occurrence of every corpus slice. tok is the key every activation row carries.
CREATE TABLE IF NOT EXISTS tokens (
    tok      UINTEGER NOT NULL,
    corpus   VARCHAR NOT NULL,
    doc_id   INTEGER NOT NULL,
    pos      INTEGER NOT NULL,
    token_id INTEGER NOT NULL
);
