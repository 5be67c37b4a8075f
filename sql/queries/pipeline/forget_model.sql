-- A model removed from the experiment (`featstore run --prune`): its sweeps, its lineage edges on
-- either side and its row (its SAEs are dropped first, with everything computed from them).
DELETE FROM merge_sweep WHERE model_a = $name OR model_b = $name;
DELETE FROM lineage WHERE child = $name OR parent = $name;
DELETE FROM models WHERE name = $name;
