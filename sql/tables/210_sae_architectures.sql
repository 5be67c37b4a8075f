-- Gated SAEs, loaded from SAELens and encoded (not trained), join the lookup of sae_architectures.
-- The CREATE does nothing where 023 made the table; it names the table this file changes.
CREATE TABLE IF NOT EXISTS sae_architectures (
    architecture VARCHAR PRIMARY KEY,
    description  VARCHAR NOT NULL
);
INSERT OR IGNORE INTO sae_architectures VALUES
    ('gated', 'a gate picks the active features, a magnitude path sharing W_enc sets them (SAELens "gated", inference only)');
