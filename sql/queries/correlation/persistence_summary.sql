-- The persistence_summary macro at a chosen threshold, statistic, method and policy (sql/persistence/),
-- for `featstore persistence` and notebooks.
SELECT * FROM persistence_summary(threshold := $threshold, stat := $stat, method := $method, policy := $policy);
