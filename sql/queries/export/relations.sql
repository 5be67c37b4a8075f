-- User-visible tables and views of the warehouse, sorted.
SELECT table_name FROM duckdb_tables() WHERE NOT internal AND schema_name = 'main'
UNION
SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'
ORDER BY 1;
