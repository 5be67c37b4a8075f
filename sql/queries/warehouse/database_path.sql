-- The file of the connection's current database: the warehouse folder, whose catalog paths are relative to it.
SELECT path FROM duckdb_databases() WHERE database_name = current_database();
