-- activation_partitions as `featstore export --engine-layout` writes it: each path relative to the
-- layout folder, where the partition files are linked under activations/sae=…/corpus=….
SELECT * REPLACE ('activations/sae=' || sae || '/corpus=' || corpus || '/' || parse_filename(path) AS path)
FROM activation_partitions
