-- How many of $names exist as views, tables or functions (an older warehouse may lack some).
SELECT count(DISTINCT name)
FROM (SELECT view_name AS name FROM duckdb_views()
      UNION ALL SELECT table_name FROM duckdb_tables()
      UNION ALL SELECT function_name FROM duckdb_functions())
WHERE list_contains($names, name);
