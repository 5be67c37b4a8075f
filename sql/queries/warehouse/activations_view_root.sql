-- The folder the stored `activations` view was built for (its comment): another folder means the warehouse
-- was moved or copied, and the view must be rebuilt over this folder's files.
SELECT comment FROM duckdb_views() WHERE view_name = 'activations' AND NOT temporary;
