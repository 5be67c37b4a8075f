-- The checked rows of an imported file (view import_rows) to store: act > 0 only (the rest are the sparse
-- format's implicit zeros), in tok order like an ingest's partitions (the writer's delta encoding of tok relies on it).
SELECT tok, feature, act FROM import_rows WHERE act > 0 ORDER BY tok, feature;
