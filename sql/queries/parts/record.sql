-- Shard $part of run $run has finished its part file (a rerun of the shard replaces its row).
DELETE FROM ingest_parts WHERE run = $run AND part = $part;
INSERT INTO ingest_parts (run, part, parts, sae, corpus, path, n_rows)
VALUES ($run, $part, $parts, $sae, $corpus, $path, $n_rows);
