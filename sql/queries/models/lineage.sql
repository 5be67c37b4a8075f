SELECT parent, child, relation, parent_order, merge_method, merge_t
FROM lineage
ORDER BY child, parent_order;
