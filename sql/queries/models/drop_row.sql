-- A model's row and its parent edges, before it is registered again (its SAEs stay).
DELETE FROM lineage WHERE child = $name;
DELETE FROM models WHERE name = $name;
