-- Chains of persisting features across generations (base -> fine-tune -> merge ...), by recursive
-- SQL over the lineage: a family starts at a feature of a model with no parents that persists into
-- a child, and follows, edge by edge, each parent feature to its best child match while
-- r >= threshold. A merge child is reached from both parents, so one of its features may belong to
-- two families. Chains stop at depth 64, so even a cyclic lineage (refused at registration, but
-- possible in a hand-edited catalog) cannot make the recursion run forever.
--   SELECT family, list(model || ':' || feature ORDER BY depth) FROM feature_families GROUP BY family;
CREATE OR REPLACE MACRO feature_families(threshold := 0.8, stat := 'all_tokens') AS TABLE
WITH RECURSIVE links AS (
    SELECT parent, child, corpus, feature AS parent_feature, match AS child_feature, r
    FROM persistence(threshold := threshold, stat := stat)
    WHERE side = 'parent' AND status = 'persists'
), chains AS (
    SELECT l.parent || ':' || l.parent_feature AS family, l.corpus, l.parent AS root_model, l.parent_feature AS root_feature,
           0 AS depth, NULL::VARCHAR AS parent, NULL::UINTEGER AS parent_feature, l.parent AS model, l.parent_feature AS feature,
           NULL::FLOAT AS r
    FROM links l
    WHERE NOT EXISTS (SELECT 1 FROM lineage g WHERE g.child = l.parent)
    GROUP BY ALL
    UNION ALL
    SELECT c.family, c.corpus, c.root_model, c.root_feature, c.depth + 1, c.model, c.feature, l.child, l.child_feature, l.r
    FROM chains c
    JOIN links l ON l.parent = c.model AND l.parent_feature = c.feature AND l.corpus = c.corpus
    WHERE c.depth < 64
)
SELECT * FROM chains;
-- feature_families at threshold 0.8 on all_tokens; feature_families(...) for others.
CREATE OR REPLACE VIEW feature_families AS SELECT * FROM feature_families();
