-- A rerun of the same (sae_a, sae_b, corpus, stat) keeps the run's id.
UPDATE correlation_runs
SET r_floor = $r_floor, n_tokens = $n_tokens, n_pairs = $n_pairs, seconds = $seconds, min_cofiring = $min_cofiring,
    engine = $engine, created_at = current_timestamp
WHERE id = $id;
