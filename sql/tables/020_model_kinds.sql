-- What a model is in its lineage. A lookup table, not a CHECK, so a new kind is one INSERT (see
-- sql/README.md); models.kind references it.
CREATE TABLE IF NOT EXISTS model_kinds (
    kind        VARCHAR PRIMARY KEY,
    description VARCHAR NOT NULL
);
INSERT INTO model_kinds VALUES
    ('base', 'trained from scratch; a root of the lineage'),
    ('finetune', 'one parent, trained further on new data'),
    ('merge', 'two parents, their weights interpolated'),
    ('imported', 'registered from elsewhere, lineage unknown');
