-- How a lineage child came from its parent. A lookup table, not a CHECK, so a new relation (a
-- distillation, say) is one INSERT; lineage.relation references it.
CREATE TABLE IF NOT EXISTS lineage_relations (
    relation    VARCHAR PRIMARY KEY,
    description VARCHAR NOT NULL
);
INSERT INTO lineage_relations VALUES
    ('finetune', 'the child is its one parent trained further'),
    ('merge', 'the child interpolates two parents (parent_order 0 and 1, merge_t toward 1)');
