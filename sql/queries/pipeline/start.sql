-- Record $step as running: its row updated in place when it has one (so the table keeps the order in which
-- steps first ran), else inserted; the same on both catalogs (a DuckLake has no keys for INSERT OR REPLACE).
UPDATE pipeline_steps
SET input_hash = $input_hash, status = 'running', preset = $preset, params = $params, summary = NULL, seconds = NULL,
    started_at = current_timestamp, finished_at = NULL
WHERE step = $step;
INSERT INTO pipeline_steps (step, input_hash, status, preset, params, started_at)
SELECT $step, $input_hash, 'running', $preset, $params, current_timestamp
WHERE NOT EXISTS (SELECT 1 FROM pipeline_steps WHERE step = $step);
