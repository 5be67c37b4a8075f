-- Crosscoders (featstore.crosscoders) join the lookup of sae_architectures: each crosscoder is also a row
-- of saes (see 309_crosscoders.sql). The CREATE does nothing where 023 made the table; it names the table changed.
CREATE TABLE IF NOT EXISTS sae_architectures (
    architecture VARCHAR PRIMARY KEY,
    description  VARCHAR NOT NULL
);
INSERT OR IGNORE INTO sae_architectures VALUES
    ('crosscoder', 'one dictionary over two models'' activations at the same tokens (featstore.crosscoders)');
