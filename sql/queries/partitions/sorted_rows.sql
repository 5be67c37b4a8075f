-- A partition file's rows (Parquet file $path) in the stored order, by (feature, tok): DuckDB's external
-- sort keeps memory bounded at any partition size.
SELECT tok, feature, act FROM read_parquet($path) ORDER BY feature, tok;
