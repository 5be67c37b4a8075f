-- The tokens of corpus $corpus as a Parquet file at $path, for a Spark session that reads no DuckDB file
-- (statistics that need token rows).
COPY (SELECT tok, token_id FROM tokens WHERE corpus = $corpus) TO $path (FORMAT parquet);
