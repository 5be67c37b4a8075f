-- A seed replica: an SAE trained like another SAE of the same model (same data, same settings),
-- differing only in its seed. seed_of names that SAE; NULL for every other SAE. Replicas are never
-- primary: they measure the seed-noise floor of persistence (view seed_floor), nothing else.
ALTER TABLE saes ADD COLUMN seed_of VARCHAR;
