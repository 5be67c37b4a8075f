-- Every lineage edge parent -> child with the best matches of both sides, read from the correlation
-- run of the two models' primary SAEs on each corpus and statistic (either orientation; a run with
-- the parent as sae_a wins if both exist). side 'parent': a parent feature and its best child
-- feature; side 'child': the reverse (match_sae: the SAE of the match). The threshold-free base of
-- the persistence views.
CREATE OR REPLACE VIEW edge_matches AS
WITH edge_runs AS (
    SELECT l.parent, l.child, l.relation, l.parent_order, p.sae AS parent_sae, c.sae AS child_sae,
           r.id AS run_id, r.corpus, r.stat, r.sae_a = p.sae AS parent_is_a
    FROM lineage l
    JOIN primary_saes p ON p.model = l.parent
    JOIN primary_saes c ON c.model = l.child
    JOIN correlation_runs r ON (r.sae_a = p.sae AND r.sae_b = c.sae) OR (r.sae_a = c.sae AND r.sae_b = p.sae)
    QUALIFY row_number() OVER (PARTITION BY l.parent, l.child, r.corpus, r.stat ORDER BY parent_is_a DESC, r.id DESC) = 1
)
SELECT e.parent, e.child, e.relation, e.parent_order, e.corpus, e.stat, e.run_id,
       CASE WHEN (m.side = 'a') = e.parent_is_a THEN 'parent' ELSE 'child' END AS side,
       CASE WHEN (m.side = 'a') = e.parent_is_a THEN e.parent_sae ELSE e.child_sae END AS sae,
       m.feature, m.match, m.r,
       CASE WHEN (m.side = 'a') = e.parent_is_a THEN e.child_sae ELSE e.parent_sae END AS match_sae
FROM edge_runs e
JOIN best_matches m ON m.run_id = e.run_id;
