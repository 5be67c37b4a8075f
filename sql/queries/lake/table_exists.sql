-- Whether table $table exists in attached database $database (1 or 0): a lake's guard table, looked for
-- before anything is created, so the usual open writes nothing another writer's commit could conflict with.
SELECT count(*) FROM duckdb_tables() WHERE database_name = $database AND table_name = $table;
