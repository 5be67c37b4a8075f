-- The catalog row of partition ($sae, $corpus), replaced by a new commit of the same pair in one transaction.
DELETE FROM activation_partitions WHERE sae = $sae AND corpus = $corpus;
