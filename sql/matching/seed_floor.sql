-- The seed-noise floor per model, corpus, seed replica and threshold 0.50, 0.55, ..., 0.95 (all_tokens r,
-- best match): primary_share_persisting is the share of the primary SAE's live features whose best
-- match in the seed replica reaches the threshold, replica_share_persisting the reverse direction.
CREATE OR REPLACE VIEW seed_floor AS
SELECT * FROM seed_floors(thresholds := [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]);
