-- For a merged model (two lineage parents, parent_a merged toward parent_b): every child feature
-- with its best r against each parent, and where it came from at the threshold: 'from_a',
-- 'from_b', 'both' or 'emerged'; 'dead' when it never fires on the corpus, 'constant' when it fires
-- with one value (no defined r against either parent), as in `persistence`. Counts per child:
--   SELECT child, inheritance, count(*) FROM merge_inheritance GROUP BY ALL;
CREATE OR REPLACE MACRO merge_inheritance(threshold := 0.8, stat := 'all_tokens') AS TABLE
WITH child_side AS (
    SELECT e.child, e.corpus, e.stat, e.parent, e.parent_order, e.sae, e.feature, e.match, e.r
    FROM edge_matches e
    WHERE e.relation = 'merge' AND e.side = 'child' AND e.stat = stat
), paired AS (
    SELECT a.child, a.corpus, a.stat, a.sae, a.feature,
           a.parent AS parent_a, a.match AS match_a, a.r AS r_a,
           b.parent AS parent_b, b.match AS match_b, b.r AS r_b
    FROM child_side a
    JOIN child_side b ON b.child = a.child AND b.corpus = a.corpus AND b.feature = a.feature
                     AND a.parent_order = 0 AND b.parent_order = 1
)
SELECT p.* EXCLUDE (sae), threshold::DOUBLE AS threshold,
       CASE WHEN r_a IS NULL AND r_b IS NULL
            THEN CASE WHEN EXISTS (SELECT 1 FROM activations x WHERE x.sae = p.sae AND x.corpus = p.corpus
                                                             AND x.feature = p.feature) THEN 'constant' ELSE 'dead' END
            WHEN r_a >= threshold AND r_b >= threshold THEN 'both'
            WHEN r_a >= threshold THEN 'from_a'
            WHEN r_b >= threshold THEN 'from_b'
            ELSE 'emerged' END AS inheritance
FROM paired p
WHERE CASE WHEN threshold BETWEEN -1 AND 1 THEN true
           ELSE error('merge_inheritance: threshold must be a correlation between -1 and 1, got ' || threshold) END;
-- merge_inheritance at threshold 0.8 on all_tokens; merge_inheritance(...) for others.
CREATE OR REPLACE VIEW merge_inheritance AS SELECT * FROM merge_inheritance();
