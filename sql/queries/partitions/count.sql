-- How many partitions the catalog lists (reported by `featstore relocate`).
SELECT count(*) FROM activation_partitions;
