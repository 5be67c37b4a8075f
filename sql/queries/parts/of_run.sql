-- The finished parts of run $run, in shard order.
SELECT part, path FROM ingest_parts WHERE run = $run ORDER BY part;
