-- Per lineage edge, corpus and feature at a threshold given at query time: a parent feature
-- 'persists' when some child feature correlates with it at r >= threshold (its best match does),
-- else it 'disappears'; a child feature 'persists' or 'emerges' the same way. A feature that never
-- fires on the corpus is 'dead'; one that fires but has no defined r (the same value on every token
-- it fires on, e.g. everywhere) is 'constant'. A threshold outside [-1, 1] is an error.
--   SELECT * FROM persistence(threshold := 0.7, stat := 'token_type_mean');
CREATE OR REPLACE MACRO persistence(threshold := 0.8, stat := 'all_tokens') AS TABLE
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, e.run_id, e.side, e.sae, e.feature, e.match, e.r,
       CASE WHEN e.r IS NULL AND e.fires THEN 'constant'
            WHEN e.r IS NULL THEN 'dead'
            -- checked here too: a filter on status is rewritten into r >= threshold and pushed down
            WHEN e.r >= CASE WHEN threshold BETWEEN -1 AND 1 THEN threshold
                             ELSE error('persistence: threshold must be a correlation between -1 and 1, got ' || threshold) END
            THEN 'persists'
            WHEN e.side = 'parent' THEN 'disappears'
            ELSE 'emerges' END AS status
FROM (SELECT *, r IS NOT NULL OR EXISTS (SELECT 1 FROM activations a WHERE a.sae = m.sae AND a.corpus = m.corpus
                                                          AND a.feature = m.feature) AS fires
      FROM edge_matches m) e
WHERE e.stat = stat
  AND CASE WHEN threshold BETWEEN -1 AND 1 THEN true
           ELSE error('persistence: threshold must be a correlation between -1 and 1, got ' || threshold) END;
-- persistence at the paper's threshold 0.8 on the all_tokens statistic; persistence(...) for others.
CREATE OR REPLACE VIEW persistence AS SELECT * FROM persistence();
