INSERT OR REPLACE INTO pipeline_steps (step, input_hash, status, preset, params, started_at)
VALUES ($step, $input_hash, 'running', $preset, $params, current_timestamp);
