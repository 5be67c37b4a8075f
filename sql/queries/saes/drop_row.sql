-- SAE $id's own row, last in its cascade (partitions, runs and explanations of it are dropped before);
-- a crosscoder's row in crosscoders and its latents go with it.
DELETE FROM crosscoder_latents WHERE sae = $id;
DELETE FROM crosscoders WHERE sae = $id;
DELETE FROM saes WHERE id = $id;
