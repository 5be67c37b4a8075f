-- A round-1 record ($old, a bare file name) renamed to the table file now holding that text ($new), keeping its sha256.
UPDATE schema_migrations SET file = $new WHERE file = $old;
