-- The merge sweep (the paper's Figure 5): the merge of model_a and model_b at each t, and the parents'
-- common base as a baseline (t NULL), evaluated on the validation part of each parent's training corpus.
CREATE TABLE IF NOT EXISTS merge_sweep (
    model_a    VARCHAR NOT NULL,     -- first parent: the merge at t = 0
    model_b    VARCHAR NOT NULL,     -- second parent: the merge at t = 1
    method     VARCHAR NOT NULL,     -- slerp | linear
    t          DOUBLE,               -- interpolation weight toward model_b; NULL on baseline rows
    evaluated  VARCHAR NOT NULL,     -- 'merge', or the name of the baseline model
    eval_set   VARCHAR NOT NULL,     -- whose validation data: model_a or model_b
    corpus     VARCHAR NOT NULL,     -- that parent's training corpus spec (its validation part is used)
    n_tokens   BIGINT NOT NULL,
    loss       DOUBLE NOT NULL,
    accuracy   DOUBLE NOT NULL,      -- next-token accuracy
    created_at TIMESTAMP DEFAULT current_timestamp
);
