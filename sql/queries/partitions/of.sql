-- The (sae, corpus) keys of the partitions of SAE $sae and/or corpus $corpus (NULL: any), to drop them one by one.
SELECT sae, corpus FROM activation_partitions
WHERE ($sae IS NULL OR sae = $sae) AND ($corpus IS NULL OR corpus = $corpus);
