-- Crosscoders (featstore.crosscoders): one dictionary trained on a parent's and a child's activations
-- at the same tokens. Each is also a row of saes (architecture 'crosscoder', model = the child, never
-- primary), so its activations, feature pages and cascades are an SAE's; this table says which two
-- models it reads.
CREATE TABLE IF NOT EXISTS crosscoders (
    sae          VARCHAR PRIMARY KEY,  -- saes.id of the crosscoder
    parent_model VARCHAR NOT NULL,     -- models.name; its decoder is index 0
    child_model  VARCHAR NOT NULL,     -- models.name; its decoder is index 1
    sparsity     VARCHAR NOT NULL CHECK (sparsity IN ('batchtopk', 'l1')),
    source       VARCHAR NOT NULL      -- the text it was trained on (a spec or a warehouse corpus)
);
