-- The causal check of matched feature pairs (featstore.matching.effects): feature_a ablated in sae_a's model
-- and feature_b in sae_b's, on the same tokens of the run's corpus, compared where either fires. One row per
-- pair checked by a match run of method 'causal'; those with tokens > 0 are also its match_pairs (score =
-- effect_cosine). Means are NULL where there was no position to read.
CREATE TABLE IF NOT EXISTS causal_effects (
    run_id           INTEGER NOT NULL,   -- match_runs.id
    feature_a        UINTEGER NOT NULL,
    feature_b        UINTEGER NOT NULL,
    match_method     VARCHAR NOT NULL,   -- the method whose best match chose the pair
    match_score      DOUBLE NOT NULL,    -- its score of the pair
    selected         VARCHAR NOT NULL CHECK (selected IN ('top', 'sample')),
    tokens           BIGINT NOT NULL,    -- positions compared: where either feature fires
    tokens_a         BIGINT NOT NULL,    -- of which feature_a fires on
    tokens_b         BIGINT NOT NULL,
    effect_cosine    DOUBLE,             -- cosine of the two changes in log-probabilities (Fisher metric, pooled)
    loss_correlation DOUBLE,             -- Pearson r of the two loss changes (NULL: one does not move)
    loss_change_a    DOUBLE,             -- mean next-token loss change, ablated - clean, where feature_a fires
    loss_change_b    DOUBLE,
    kl_a             DOUBLE,             -- mean KL(clean || ablated) where feature_a fires
    kl_b             DOUBLE
);
