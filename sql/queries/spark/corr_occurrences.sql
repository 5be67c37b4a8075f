-- all_tokens / cofiring rows of one side (Spark SQL; featstore.engines.spark), as
-- sql/correlation/corr_occurrences.sql: keyed by token occurrence. View: acts (tok, feature, act).
SELECT tok AS key, feature, act AS x
FROM acts
