-- The pipeline steps for the run overview (view run_steps), leaving out the report step's own row while it writes this page.
SELECT * FROM run_steps WHERE NOT (step = 'report' AND status = 'running');
