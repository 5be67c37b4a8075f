-- SAE $id's own row, last in its cascade (partitions, runs and explanations of it are dropped before);
-- a crosscoder's row in crosscoders and its latents, a lineage-initialised SAE's drift rows go with it.
DELETE FROM sae_drift WHERE sae = $id;
DELETE FROM crosscoder_latents WHERE sae = $id;
DELETE FROM crosscoders WHERE sae = $id;
DELETE FROM saes WHERE id = $id;
