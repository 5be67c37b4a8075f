-- Share of features persisting per lineage edge, corpus and statistic for thresholds 0.50, 0.55,
-- ..., 0.95 (among features that fire): how the paper's Figure 2 numbers depend on the threshold.
CREATE OR REPLACE VIEW persistence_curve AS
WITH thresholds AS (
    SELECT round(t / 100, 2) AS threshold FROM range(50, 100, 5) g(t)
), defined AS (  -- each edge's r per side as one list: ten thresholds filter lists, not ten copies of every row
    SELECT parent, child, relation, corpus, stat,
           list(r) FILTER (WHERE side = 'parent' AND r IS NOT NULL) AS parent_r,
           list(r) FILTER (WHERE side = 'child' AND r IS NOT NULL) AS child_r
    FROM edge_matches
    GROUP BY ALL
)
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, t.threshold,
       len(list_filter(e.parent_r, lambda x: x >= t.threshold)) / nullif(len(e.parent_r), 0) AS parent_share_persisting,
       len(list_filter(e.child_r, lambda x: x >= t.threshold)) / nullif(len(e.child_r), 0) AS child_share_persisting
FROM defined e
CROSS JOIN thresholds t
ORDER BY e.parent, e.child, e.corpus, e.stat, t.threshold;
