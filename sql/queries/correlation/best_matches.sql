-- Every feature of one side with its best match on the other, co-firing or not (macro corr_best_matches).
CREATE TABLE corr_work.best_{{side}} AS
SELECT * FROM corr_best_matches('corr_work.partial_{{side}}', 'corr_work.stats_{{side}}', 'corr_work.stats_{{other}}',
                                'corr_work.gaps_{{side}}', $n_features);
