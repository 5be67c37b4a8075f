-- The sae_drift rows of SAE $sae from drift_batch (feature, decoder_cosine, encoder_cosine).
INSERT INTO sae_drift SELECT $sae, feature, decoder_cosine, encoder_cosine FROM drift_batch;
