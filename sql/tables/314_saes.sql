-- A lineage-initialised SAE: trained on its model's activations starting from another model's trained SAE
-- (`init = "parent"`, `featstore sae train --init-from`), so feature i begins as that SAE's feature i.
-- init_from names that SAE; NULL for every SAE trained from random weights or imported.
ALTER TABLE saes ADD COLUMN init_from VARCHAR;
