-- The simulator's prediction for every scored sample of a score. how: rule (builtin),
-- logprobs (expected value over digit 0-9 probabilities) or sampled (the digit the endpoint
-- returned, when it gave no log-probabilities).
CREATE TABLE IF NOT EXISTS simulations (
    score_id  INTEGER NOT NULL,            -- scores.id
    tok       UINTEGER NOT NULL,
    kind      VARCHAR NOT NULL,            -- explanation_samples.kind of the target sample
    true_act  FLOAT NOT NULL,
    true_bin  TINYINT NOT NULL,
    simulated DOUBLE NOT NULL,             -- 0..9
    how       VARCHAR NOT NULL CHECK (how IN ('rule', 'logprobs', 'sampled')),
    PRIMARY KEY (score_id, tok)
);
