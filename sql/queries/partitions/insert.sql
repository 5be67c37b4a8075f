INSERT INTO activation_partitions (sae, corpus, path, n_rows, n_tokens, bytes, origin, run)
VALUES ($sae, $corpus, $path, $n_rows, $n_tokens, $bytes, $origin, $run);
