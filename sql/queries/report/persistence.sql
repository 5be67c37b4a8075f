-- The persistence table under Figure 2 (view run_persistence).
SELECT * FROM run_persistence;
