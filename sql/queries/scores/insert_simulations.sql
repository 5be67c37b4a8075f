-- The simulated examples score $score_id was computed from, from simulations_batch (the simulations columns after score_id).
INSERT INTO simulations SELECT $score_id AS score_id, * FROM simulations_batch;
