-- One-to-one matches (Hungarian: the assignment of largest total score over a method's candidate
-- pairs, with features left unmatched rather than paired outside the candidates), stored per SAE
-- pair, corpus (NULL for weight methods) and method when featstore.matching builds the evidence.
CREATE TABLE IF NOT EXISTS match_assignments (
    sae_a     VARCHAR NOT NULL,
    sae_b     VARCHAR NOT NULL,
    corpus    VARCHAR,
    method    VARCHAR NOT NULL,
    feature_a UINTEGER NOT NULL,
    feature_b UINTEGER NOT NULL,
    score     FLOAT NOT NULL
);
