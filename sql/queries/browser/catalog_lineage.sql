-- Lineage edges with merge method and t (parent_order 1 is the side t moves toward).
SELECT parent, child, relation, parent_order, merge_method, merge_t
FROM lineage
ORDER BY child, parent_order, parent
