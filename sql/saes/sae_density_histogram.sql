-- Feature-density histogram of each (SAE, corpus) partition: how many features fire on what share
-- of the corpus' tokens, in half-decade bins of log10(density). Features that never fire on the
-- corpus form their own row (log10_density_low NULL, never_fired true). Dead or ultra-rare
-- features pile up at the left, dense "always on" features at the right.
CREATE OR REPLACE VIEW sae_density_histogram AS
SELECT sae, corpus,
       n_firing = 0 AS never_fired,
       floor(log10(nullif(density, 0)) * 2) / 2 AS log10_density_low,
       count(*) AS n_features
FROM feature_stats
GROUP BY ALL
ORDER BY sae, corpus, never_fired DESC, log10_density_low;
