UPDATE pipeline_steps
SET status = 'done', summary = $summary, seconds = $seconds, finished_at = current_timestamp
WHERE step = $step;
