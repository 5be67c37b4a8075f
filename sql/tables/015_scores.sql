-- How well a simulator, reading only an explanation, predicts a feature's true activations:
-- score = Pearson(simulated, true) over the feature's held-out samples (heldout_top, heldout_random,
-- zero: none of them shown to the explainer); 0 when the simulation is constant (it carries no
-- information). kind: self (the feature's own explanation),
-- transfer (a matched parent feature's explanation), shuffled (another feature's, a baseline).
CREATE TABLE IF NOT EXISTS scores (
    id                INTEGER PRIMARY KEY,
    sae               VARCHAR NOT NULL,    -- the feature whose activations are predicted
    corpus            VARCHAR NOT NULL,
    feature           UINTEGER NOT NULL,
    kind              VARCHAR NOT NULL CHECK (kind IN ('self', 'transfer', 'shuffled')),
    source_sae        VARCHAR NOT NULL,    -- whose explanation was used (explanations key)
    source_feature    UINTEGER NOT NULL,
    explainer         VARCHAR NOT NULL,
    explainer_version VARCHAR NOT NULL,
    simulator         VARCHAR NOT NULL,
    simulator_version VARCHAR NOT NULL,
    score             DOUBLE,              -- NULL only when the true activations are constant
    n_samples         INTEGER NOT NULL,
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    created_at        TIMESTAMP DEFAULT current_timestamp,
    UNIQUE (sae, corpus, feature, source_sae, source_feature, explainer, explainer_version,
            simulator, simulator_version)
);
