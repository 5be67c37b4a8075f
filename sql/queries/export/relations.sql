-- User-visible tables and views of the warehouse (the current database: a sandboxed connection
-- attaches it beside an in-memory one), sorted.
SELECT table_name FROM duckdb_tables() WHERE NOT internal AND schema_name = 'main' AND database_name = current_database()
UNION
SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' AND database_name = current_database()
ORDER BY 1;
