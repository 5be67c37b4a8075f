-- The sharded run (NULL when none) and path of the committed partition of ($sae, $corpus); no row when there is none.
SELECT run, path FROM activation_partitions WHERE sae = $sae AND corpus = $corpus;
