-- For each lineage edge and corpus, the n parent features whose best match in the child correlates
-- most strongly (all_tokens), among features that fire at least min_firing times on that corpus (a
-- feature firing once matches anything firing on that one token at r = 1): the features the report
-- shows side by side with their matches (Figures 3-4). Built on edge_matches.
CREATE OR REPLACE MACRO showcase_matches(n := 2, min_firing := 10) AS TABLE
WITH child_saes AS (
    SELECT DISTINCT run_id, sae AS child_sae FROM edge_matches WHERE side = 'child'
), firing AS (
    SELECT sae, corpus, feature, count(*) AS n_firing FROM activations GROUP BY ALL
)
SELECT e.parent, e.child, e.corpus, e.sae AS parent_sae, c.child_sae, e.feature AS parent_feature,
       e.match AS child_feature, e.r, f.n_firing AS parent_firing,
       row_number() OVER (PARTITION BY e.parent, e.child, e.corpus ORDER BY e.r DESC, e.feature) AS rank
FROM edge_matches e
JOIN child_saes c USING (run_id)
JOIN firing f ON f.sae = e.sae AND f.corpus = e.corpus AND f.feature = e.feature
WHERE e.side = 'parent' AND e.stat = 'all_tokens' AND e.r IS NOT NULL AND e.match IS NOT NULL
  AND f.n_firing >= min_firing
QUALIFY rank <= n
ORDER BY e.parent, e.child, e.corpus, rank;
