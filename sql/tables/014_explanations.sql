-- One explanation per (SAE feature, corpus it was sampled on, explainer, prompt version).
-- explainer names the backend: builtin | openai:<model> | hf:<folder>.
CREATE TABLE IF NOT EXISTS explanations (
    sae               VARCHAR NOT NULL,
    corpus            VARCHAR NOT NULL,
    feature           UINTEGER NOT NULL,
    explainer         VARCHAR NOT NULL,
    prompt_version    VARCHAR NOT NULL,
    explanation       VARCHAR NOT NULL,
    n_samples         INTEGER NOT NULL,    -- examples the explainer was shown
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    created_at        TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (sae, corpus, feature, explainer, prompt_version)
);
