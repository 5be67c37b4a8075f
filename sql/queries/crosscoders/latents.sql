-- Every latent of crosscoder $sae with its class (crosscoder_latents).
SELECT * EXCLUDE (sae) FROM crosscoder_latents WHERE sae = $sae ORDER BY latent;
