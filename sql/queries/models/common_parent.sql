-- The model both $a and $b descend from directly (their shared parent), if any.
SELECT pa.parent
FROM lineage pa
JOIN lineage pb ON pa.parent = pb.parent
WHERE pa.child = $a AND pb.child = $b
ORDER BY pa.parent
LIMIT 1;
