-- The id of the latest snapshot of the lake attached as $database: it changes with every commit.
SELECT id FROM ducklake_current_snapshot($database);
