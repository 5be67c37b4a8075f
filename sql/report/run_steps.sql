-- Wall time of each pipeline step's last execution, in run order.
CREATE OR REPLACE VIEW run_steps AS
SELECT step, status, round(seconds, 1) AS seconds, finished_at
FROM pipeline_steps
ORDER BY started_at;
