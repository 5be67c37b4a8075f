-- The warehouse's saved views and macros (what the SQL page documents).
SELECT view_name AS name, 'view' AS kind FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'
UNION
SELECT function_name, CASE function_type WHEN 'table_macro' THEN 'macro' ELSE 'scalar macro' END
FROM duckdb_functions()
WHERE function_type IN ('macro', 'table_macro') AND NOT internal AND schema_name = 'main'
ORDER BY name
