-- correlation_runs records how each run was computed: the cofiring statistic's least co-firing
-- count (NULL for the statistics that have none) and the engine (sql, torch, spark). Rows written
-- before this file keep NULL in both.
ALTER TABLE correlation_runs ADD COLUMN IF NOT EXISTS min_cofiring INTEGER;
ALTER TABLE correlation_runs ADD COLUMN IF NOT EXISTS engine VARCHAR;
