-- The warehouse's own tables (no views), sorted: each is written as <table>.parquet in an engine layout.
SELECT table_name FROM duckdb_tables() WHERE NOT internal AND schema_name = 'main' ORDER BY 1;
