-- The id of a new correlation run: one past the largest ever stored.
SELECT coalesce(max(id), 0) + 1 FROM correlation_runs;
