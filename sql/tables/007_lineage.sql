-- The model DAG as rows. A merge has one row per parent; merge_t is the interpolation weight
-- toward the second parent (parent_order 1), as in `featstore merge A B --t`.
CREATE TABLE IF NOT EXISTS lineage (
    parent       VARCHAR NOT NULL,
    child        VARCHAR NOT NULL,
    relation     VARCHAR NOT NULL CHECK (relation IN ('finetune', 'merge')),
    parent_order INTEGER NOT NULL DEFAULT 0,
    merge_method VARCHAR,
    merge_t      DOUBLE,
    PRIMARY KEY (parent, child)
);
