-- Each model's primary SAE with its seed replicas (saes.seed_of): the pairs whose matches measure
-- how many features "persist" with no fine-tune at all, only another seed.
CREATE OR REPLACE VIEW seed_pairs AS
SELECT p.model, p.sae AS primary_sae, s.id AS replica_sae, k.seed AS primary_seed, s.seed AS replica_seed
FROM primary_saes p
JOIN saes k ON k.id = p.sae
JOIN saes s ON s.seed_of = p.sae;
