-- The causal match method (featstore.matching.causal): a checked pair's features change the next-token
-- distribution the same way when each is ablated in its model. The CREATE does nothing where 301 made the table.
CREATE TABLE IF NOT EXISTS match_methods (
    name              VARCHAR PRIMARY KEY,
    source            VARCHAR NOT NULL,
    default_threshold DOUBLE NOT NULL,
    description       VARCHAR NOT NULL
);
INSERT OR IGNORE INTO match_methods VALUES
    ('causal', 'causal', 0.5, 'cosine of the two features'' ablation effects on the next-token distribution (Fisher metric), where either fires');
