-- Every partition's (sae, corpus) and catalog path: the files an engine layout links under activations/.
SELECT sae, corpus, path FROM activation_partitions;
