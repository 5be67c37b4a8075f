-- Record sql/ file $file as applied with text hash $sha256 (re-applying a changed view replaces its record).
INSERT OR REPLACE INTO schema_migrations (file, sha256) VALUES ($file, $sha256);
