-- saes.architecture now references sae_architectures (rebuilt, rows kept, as in 024_models.sql).
CREATE TEMP TABLE saes_before AS SELECT * FROM saes;
DROP TABLE saes;
CREATE TABLE saes (
    id           VARCHAR PRIMARY KEY,
    model        VARCHAR NOT NULL,     -- models.name
    hook_point   VARCHAR NOT NULL,     -- e.g. blocks.0.mlp.hook_post
    layer        INTEGER NOT NULL,
    d_in         INTEGER NOT NULL,
    d_sae        INTEGER NOT NULL,
    architecture VARCHAR NOT NULL REFERENCES sae_architectures (architecture),
    l1_coeff     DOUBLE,
    k            INTEGER,
    seed         INTEGER,
    train_tokens BIGINT,
    path         VARCHAR,              -- folder with sae_weights.safetensors + cfg.json
    is_primary   BOOLEAN NOT NULL DEFAULT true,  -- the SAE that stands for its model in persistence
    metrics      JSON,                 -- mse, fvu, l0, dead_fraction, ce_loss_recovered, ...
    created_at   TIMESTAMP DEFAULT current_timestamp
);
INSERT INTO saes SELECT * FROM saes_before;
DROP TABLE saes_before;
