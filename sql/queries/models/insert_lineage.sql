-- One lineage edge of a model being registered: $parent -> $child, its place among the parents and how it was merged.
INSERT INTO lineage (parent, child, relation, parent_order, merge_method, merge_t)
VALUES ($parent, $child, $relation, $parent_order, $merge_method, $merge_t);
