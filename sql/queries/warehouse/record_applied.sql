-- Record sql/ file $file as applied with text hash $sha256 (re-applying a changed view replaces its record).
-- Delete, then insert: the same on both catalogs (a DuckLake has no keys for INSERT OR REPLACE).
DELETE FROM schema_migrations WHERE file = $file;
INSERT INTO schema_migrations (file, sha256) VALUES ($file, $sha256);
