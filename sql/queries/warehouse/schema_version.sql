-- The last table migration applied, e.g. 'tables/027_saes.sql' (`featstore info`).
SELECT max(file) FROM schema_migrations WHERE file LIKE 'tables/%';
