-- How many candidate pairs match run $run_id stored (its n_pairs).
SELECT count(*) FROM match_pairs WHERE run_id = $run_id;
