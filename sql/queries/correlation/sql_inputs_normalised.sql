-- The SQL engine's inputs for statistics with implicit zeros (all_tokens), from the checked raw rows
-- corr_work.raw_a and raw_b: each side's per-feature statistics, then its rows divided by the feature's
-- centred norm, so that a pair's r is one SUM. Side a is read one feature range at a time, so it is
-- sorted: each range then scans only its own row groups. Side b is grouped into one list row per key.
CREATE TABLE corr_work.stats_a AS SELECT * FROM corr_feature_stats('corr_work.raw_a', $n_tokens);
CREATE TABLE corr_work.rows_a AS SELECT * FROM corr_normalised('corr_work.raw_a', 'corr_work.stats_a') ORDER BY feature;
DROP TABLE corr_work.raw_a;
CREATE TABLE corr_work.stats_b AS SELECT * FROM corr_feature_stats('corr_work.raw_b', $n_tokens);
CREATE TABLE corr_work.rows_b AS SELECT * FROM corr_normalised('corr_work.raw_b', 'corr_work.stats_b');
DROP TABLE corr_work.raw_b;
CREATE TABLE corr_work.lists_b AS SELECT * FROM corr_key_lists('corr_work.rows_b');
