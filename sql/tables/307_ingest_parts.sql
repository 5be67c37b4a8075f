-- The finished parts of sharded ingest runs not yet published. A shard commits its row once its part
-- file is complete; the shard whose commit completes the set publishes the partition and removes the
-- run's rows. The catalog, not a listing of a shared folder, says which parts exist.
CREATE TABLE IF NOT EXISTS ingest_parts (
    run        VARCHAR NOT NULL,       -- the run folder's name under staging/shards/
    part       INTEGER NOT NULL,       -- shard index I of I/N
    parts      INTEGER NOT NULL,       -- N
    sae        VARCHAR NOT NULL,
    corpus     VARCHAR NOT NULL,
    path       VARCHAR NOT NULL,       -- the part file, relative to the warehouse folder
    n_rows     BIGINT NOT NULL,
    written_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run, part)
);
