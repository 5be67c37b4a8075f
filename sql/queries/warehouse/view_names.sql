-- The views of the open database: a new catalog has no `activations` view yet, and the sql/ views build on it.
SELECT view_name FROM duckdb_views();
