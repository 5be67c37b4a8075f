-- The statistics a correlation run can compute between two SAEs' features. A lookup table, not a
-- CHECK, so a new statistic is one INSERT; correlation_runs.stat references it.
CREATE TABLE IF NOT EXISTS correlation_stats (
    stat        VARCHAR PRIMARY KEY,
    description VARCHAR NOT NULL
);
INSERT INTO correlation_stats VALUES
    ('all_tokens', 'Pearson r over every token occurrence of the corpus, implicit zeros included'),
    ('cofiring', 'Pearson r over the occurrences where both features fire'),
    ('token_type_mean', 'Pearson r of the mean activation per token type (the paper''s statistic)');
