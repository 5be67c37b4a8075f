-- The crosscoder match method (featstore.matching.crosscoder): a parent and a child SAE feature aligned
-- with one shared crosscoder latent. The CREATE does nothing where 301 made the table.
CREATE TABLE IF NOT EXISTS match_methods (
    name              VARCHAR PRIMARY KEY,
    source            VARCHAR NOT NULL,
    default_threshold DOUBLE NOT NULL,
    description       VARCHAR NOT NULL
);
INSERT OR IGNORE INTO match_methods VALUES
    ('crosscoder', 'crosscoder', 0.5, 'both features'' decoder cosine to one shared crosscoder latent (the smaller of the two)');
