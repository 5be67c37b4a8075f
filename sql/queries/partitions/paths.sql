-- Every committed partition's catalog path (a file or a glob of part files), in (sae, corpus) order:
-- what the activations view and a sandboxed reader may read.
SELECT path FROM activation_partitions ORDER BY sae, corpus;
