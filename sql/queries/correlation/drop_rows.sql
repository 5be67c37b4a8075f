DELETE FROM correlations WHERE run_id = $id;
DELETE FROM best_matches WHERE run_id = $id;
