-- The records of view/macro files that moved or went away ($files): table records are history and stay.
DELETE FROM schema_migrations WHERE list_contains($files, file);
