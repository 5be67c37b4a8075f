-- The stored pairs of a run: every pair the blocks kept (r >= the floor).
CREATE TABLE corr_work.pairs AS
SELECT feature AS feature_a, match AS feature_b, r::FLOAT AS r
FROM corr_work.found
WHERE kind = 'pair';
