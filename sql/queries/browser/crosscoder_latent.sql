-- Latent $feature of crosscoder $sae (no row for an SAE that is not a crosscoder): its models, class,
-- relative norm and Latent Scaling ratios, for its feature page.
SELECT x.parent_model, x.child_model, l.class, l.relative_norm, l.frequency, l.nu_error, l.nu_recon, l.artefact
FROM crosscoder_latents l
JOIN crosscoders x ON x.sae = l.sae
WHERE l.sae = $sae AND l.latent = $feature;
