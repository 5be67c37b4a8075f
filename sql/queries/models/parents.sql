-- The parents of model $name in merge order (parent_order 0 is a merge's t = 0 side).
SELECT parent FROM lineage WHERE child = $name ORDER BY parent_order;
