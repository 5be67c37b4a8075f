-- lineage without the CHECK on relation: relation now references lineage_relations (rebuilt, rows
-- kept, as in 024_models.sql).
CREATE TEMP TABLE lineage_before AS SELECT * FROM lineage;
DROP TABLE lineage;
CREATE TABLE lineage (
    parent       VARCHAR NOT NULL,
    child        VARCHAR NOT NULL,
    relation     VARCHAR NOT NULL REFERENCES lineage_relations (relation),
    parent_order INTEGER NOT NULL DEFAULT 0,
    merge_method VARCHAR,
    merge_t      DOUBLE,
    PRIMARY KEY (parent, child)
);
INSERT INTO lineage SELECT * FROM lineage_before;
DROP TABLE lineage_before;
