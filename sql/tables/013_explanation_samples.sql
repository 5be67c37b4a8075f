-- Examples drawn per feature for automated interpretability (macro feature_samples), with their
-- contexts rebuilt from tokens + vocab. Explainers see top | quantile | random | top_token; scores
-- are computed on the held-out heldout_top | heldout_random | zero (see 410).
CREATE TABLE IF NOT EXISTS explanation_samples (
    sae      VARCHAR NOT NULL,
    corpus   VARCHAR NOT NULL,
    feature  UINTEGER NOT NULL,
    tok      UINTEGER NOT NULL,
    kind     VARCHAR NOT NULL CHECK (kind IN ('top', 'quantile', 'random', 'top_token',
                                              'heldout_top', 'heldout_random', 'zero')),
    rank     INTEGER NOT NULL,         -- 1.. within (feature, kind[, bin])
    act      FLOAT NOT NULL,           -- true activation (0 where the feature does not fire)
    bin      TINYINT NOT NULL,         -- min-max normalised activation quantised to 0..9
    doc_id   INTEGER NOT NULL,
    pos      INTEGER NOT NULL,
    before   VARCHAR NOT NULL,         -- decoded text of the tokens before the target
    token    VARCHAR NOT NULL,         -- decoded text of the target token
    after    VARCHAR NOT NULL,
    seed     INTEGER NOT NULL,
    PRIMARY KEY (sae, corpus, feature, tok)
);
