-- SAE architectures featstore encodes with. A lookup table, so a new architecture is one INSERT;
-- saes.architecture references it. Values an older warehouse already holds are kept.
CREATE TABLE IF NOT EXISTS sae_architectures (
    architecture VARCHAR PRIMARY KEY,
    description  VARCHAR NOT NULL
);
INSERT INTO sae_architectures VALUES
    ('relu', 'ReLU encoder trained with an L1 penalty (SAELens "standard")'),
    ('topk', 'keeps the k largest pre-activations per token'),
    ('jumprelu', 'per-feature threshold, trained with a straight-through L0 loss (SAELens "jumprelu")');
INSERT OR IGNORE INTO sae_architectures
SELECT DISTINCT architecture, 'found in saes when this table was added' FROM saes;
