-- The id of a new score row: one past the largest ever stored.
SELECT coalesce(max(id), 0) + 1 FROM scores;
