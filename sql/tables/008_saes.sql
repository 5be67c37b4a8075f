CREATE TABLE IF NOT EXISTS saes (
    id           VARCHAR PRIMARY KEY,
    model        VARCHAR NOT NULL,     -- models.name
    hook_point   VARCHAR NOT NULL,     -- e.g. blocks.0.mlp.hook_post
    layer        INTEGER NOT NULL,
    d_in         INTEGER NOT NULL,
    d_sae        INTEGER NOT NULL,
    architecture VARCHAR NOT NULL,     -- relu | topk | imported
    l1_coeff     DOUBLE,
    k            INTEGER,
    seed         INTEGER,
    train_tokens BIGINT,
    path         VARCHAR,              -- folder with sae_weights.safetensors + cfg.json
    is_primary   BOOLEAN NOT NULL DEFAULT true,  -- the SAE that stands for its model in persistence
    metrics      JSON,                 -- mse, fvu, l0, dead_fraction, ce_loss_recovered, ...
    created_at   TIMESTAMP DEFAULT current_timestamp
);
