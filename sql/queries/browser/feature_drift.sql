-- Feature $feature of lineage-initialised SAE $sae (no row for any other SAE): the SAE it started from and
-- how far the feature moved from its initial vector, for its feature page.
SELECT s.init_from, d.decoder_cosine, d.encoder_cosine
FROM saes s
JOIN sae_drift d ON d.sae = s.id
WHERE s.id = $sae AND d.feature = $feature;
