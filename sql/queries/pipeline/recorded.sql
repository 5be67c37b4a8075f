-- Every pipeline step run so far with its input hash, status and summary: what `featstore run` may skip.
SELECT step, input_hash, status, summary FROM pipeline_steps;
