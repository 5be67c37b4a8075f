-- A feature's best-scored explanation (Figures 3-4 headings).
SELECT explanation, score
FROM feature_explanations
WHERE sae = $sae AND feature = $feature
ORDER BY score DESC NULLS LAST
LIMIT 1;
