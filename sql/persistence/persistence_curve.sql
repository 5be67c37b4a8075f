-- Share of features persisting per lineage edge, corpus and statistic for thresholds 0.50, 0.55,
-- ..., 0.95 (among features that fire): how the paper's Figure 2 numbers depend on the threshold.
CREATE OR REPLACE VIEW persistence_curve AS
WITH thresholds AS (
    SELECT round(t / 100, 2) AS threshold FROM range(50, 100, 5) g(t)
)
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, t.threshold,
       count(*) FILTER (WHERE e.side = 'parent' AND e.r >= t.threshold)
           / nullif(count(*) FILTER (WHERE e.side = 'parent' AND e.r IS NOT NULL), 0) AS parent_share_persisting,
       count(*) FILTER (WHERE e.side = 'child' AND e.r >= t.threshold)
           / nullif(count(*) FILTER (WHERE e.side = 'child' AND e.r IS NOT NULL), 0) AS child_share_persisting
FROM edge_matches e
CROSS JOIN thresholds t
GROUP BY ALL
ORDER BY e.parent, e.child, e.corpus, e.stat, t.threshold;
