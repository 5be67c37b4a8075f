-- How far each feature of a lineage-initialised SAE (saes.init_from) moved from the vector it started as:
-- the cosine of its decoder row (dictionary vector) and of its encoder column with their initial values,
-- written when the SAE is registered. Firing-rate changes are views over the activations (lineage_drift).
CREATE TABLE IF NOT EXISTS sae_drift (
    sae            VARCHAR NOT NULL,   -- saes.id of the lineage-initialised SAE
    feature        UINTEGER NOT NULL,
    decoder_cosine DOUBLE NOT NULL,    -- cosine of W_dec[feature] with its initial value (the init SAE's)
    encoder_cosine DOUBLE NOT NULL     -- cosine of W_enc[:, feature] with its initial value
);
