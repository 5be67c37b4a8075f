-- The primary SAEs of the run overview (view run_saes).
SELECT * FROM run_saes;
