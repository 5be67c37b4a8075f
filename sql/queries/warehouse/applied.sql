-- Every sql/ file this warehouse has applied, with the sha256 of the text applied: what a migration still has to do.
SELECT file, sha256 FROM schema_migrations;
