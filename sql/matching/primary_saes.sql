-- The SAE that stands for each model in persistence: its newest primary SAE.
CREATE OR REPLACE VIEW primary_saes AS
SELECT s.model, s.id AS sae
FROM saes s
WHERE s.is_primary
QUALIFY row_number() OVER (PARTITION BY s.model ORDER BY s.created_at DESC, s.id DESC) = 1;
