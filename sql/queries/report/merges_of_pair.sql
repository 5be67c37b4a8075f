-- The merges registered for a sweep's ($model_a, $model_b, $method), with the t each used (Figure 5).
SELECT a.child, a.merge_t
FROM lineage a
JOIN lineage b ON b.child = a.child
WHERE a.parent = $model_a AND a.parent_order = 0 AND b.parent = $model_b AND b.parent_order = 1
  AND a.merge_method = $method AND a.merge_t IS NOT NULL
ORDER BY a.child
