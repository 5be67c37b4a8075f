-- The SQL engine's inputs for statistics over the rows as they are (cofiring, token_type_mean), from the
-- checked raw rows corr_work.raw_a and raw_b: each side's per-feature statistics and its rows, side a
-- sorted by feature (each feature range then scans only its own row groups), side b grouped into one
-- list row per key.
CREATE TABLE corr_work.stats_a AS SELECT * FROM corr_feature_stats('corr_work.raw_a', $n_tokens);
CREATE TABLE corr_work.rows_a AS SELECT * FROM corr_work.raw_a ORDER BY feature;
DROP TABLE corr_work.raw_a;
CREATE TABLE corr_work.stats_b AS SELECT * FROM corr_feature_stats('corr_work.raw_b', $n_tokens);
ALTER TABLE corr_work.raw_b RENAME TO rows_b;
CREATE TABLE corr_work.lists_b AS SELECT * FROM corr_key_lists('corr_work.rows_b');
