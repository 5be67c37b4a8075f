-- SAE $id's own row, last in its cascade (partitions, runs and explanations of it are dropped before).
DELETE FROM saes WHERE id = $id;
