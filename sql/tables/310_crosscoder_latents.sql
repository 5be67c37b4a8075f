-- Each crosscoder latent: its decoder norm in each model, the relative norm (0 parent only, 1 child
-- only), its firing frequency on the evaluation sample, its class and, for exclusive latents, the
-- Latent Scaling ratios (featstore.crosscoders.latents).
CREATE TABLE IF NOT EXISTS crosscoder_latents (
    sae           VARCHAR NOT NULL,
    latent        UINTEGER NOT NULL,
    parent_norm   FLOAT NOT NULL,
    child_norm    FLOAT NOT NULL,
    relative_norm FLOAT NOT NULL,
    frequency     DOUBLE NOT NULL,
    class         VARCHAR NOT NULL CHECK (class IN ('shared', 'parent_only', 'child_only', 'intermediate', 'dead')),
    nu_error      FLOAT,
    nu_recon      FLOAT,
    artefact      BOOLEAN,
    PRIMARY KEY (sae, latent)
);
