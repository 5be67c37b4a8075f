-- Per lineage edge, corpus and feature at a threshold given at query time: a parent feature
-- 'persists' when some child feature correlates with it at r >= threshold (its best match does),
-- else it 'disappears'; a child feature 'persists' or 'emerges' the same way. A feature that never
-- fires on the corpus is 'dead' (no correlation is defined).
--   SELECT * FROM persistence(threshold := 0.7, stat := 'token_type_mean');
CREATE OR REPLACE MACRO persistence(threshold := 0.8, stat := 'all_tokens') AS TABLE
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, e.run_id, e.side, e.sae, e.feature, e.match, e.r,
       CASE WHEN e.r IS NULL THEN 'dead'
            WHEN e.r >= threshold THEN 'persists'
            WHEN e.side = 'parent' THEN 'disappears'
            ELSE 'emerges' END AS status
FROM edge_matches e
WHERE e.stat = stat;
-- persistence at the paper's threshold 0.8 on the all_tokens statistic; persistence(...) for others.
CREATE OR REPLACE VIEW persistence AS SELECT * FROM persistence();
