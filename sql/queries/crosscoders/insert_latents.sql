-- The latents (featstore.crosscoders.latents.describe_latents) of crosscoder $sae from latents_batch.
INSERT INTO crosscoder_latents BY NAME SELECT $sae AS sae, * FROM latents_batch;
