-- The id of a new match run: one past the largest ever stored.
SELECT coalesce(max(id), 0) + 1 FROM match_runs;
