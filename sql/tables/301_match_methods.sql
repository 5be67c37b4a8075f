-- The ways two SAEs' features can be matched, by name. source 'correlation': the activation r of a
-- correlation statistic (correlation_runs/correlations, featstore.correlate); 'weights': a cosine of
-- SAE weight vectors, data-free; 'activations': computed from the activation partitions of a corpus.
-- default_threshold: the score at which a match counts as persisting unless a query says otherwise.
-- featstore.matching.methods names the computation behind each row.
CREATE TABLE IF NOT EXISTS match_methods (
    name              VARCHAR PRIMARY KEY,
    source            VARCHAR NOT NULL,
    default_threshold DOUBLE NOT NULL,
    description       VARCHAR NOT NULL
);
INSERT INTO match_methods VALUES
    ('all_tokens', 'correlation', 0.8, 'Pearson r of the activations over every token of the corpus'),
    ('cofiring', 'correlation', 0.8, 'Pearson r over the tokens where both features fire'),
    ('token_type_mean', 'correlation', 0.8, 'Pearson r of the mean activation per token type'),
    ('decoder_cosine', 'weights', 0.7, 'cosine of the two features'' decoder rows (dictionary vectors)'),
    ('encoder_cosine', 'weights', 0.7, 'cosine of the two features'' encoder columns'),
    ('jaccard', 'activations', 0.5, 'co-firing Jaccard: tokens where both fire over tokens where either fires');
