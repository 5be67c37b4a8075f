-- A round-1 view record ($file): its view is re-applied under its new path.
DELETE FROM schema_migrations WHERE file = $file;
