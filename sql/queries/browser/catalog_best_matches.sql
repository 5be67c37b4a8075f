-- Best matches of every run and side (read once into arrays indexed by feature).
SELECT run_id, side, feature, match, r
FROM best_matches
WHERE match IS NOT NULL
ORDER BY run_id, side, feature
