-- Record $step as running (replacing an earlier row of it): delete, then insert, the same on both catalogs.
DELETE FROM pipeline_steps WHERE step = $step;
INSERT INTO pipeline_steps (step, input_hash, status, preset, params, started_at)
VALUES ($step, $input_hash, 'running', $preset, $params, current_timestamp);
