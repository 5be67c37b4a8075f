-- The sharded ingest run whose parts a partition holds (NULL for an unsharded ingest or an import), so
-- the shards of one run publish it once, however many of them find the set complete.
ALTER TABLE activation_partitions ADD COLUMN IF NOT EXISTS run VARCHAR;
