-- Which sql/ files this warehouse has applied, with the hash of the text it applied.
CREATE TABLE IF NOT EXISTS schema_migrations (
    file       VARCHAR PRIMARY KEY,
    sha256     VARCHAR NOT NULL,
    applied_at TIMESTAMP DEFAULT current_timestamp
);
