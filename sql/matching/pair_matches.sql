-- Every compared pair of SAEs with the best matches of both sides, from its correlation runs:
-- the lineage edges of edge_matches, plus each model's primary SAE against its seed replicas
-- (relation 'seed', parent = child = the model, side 'parent' = the primary, 'child' = the replica).
-- The threshold-free base of persistence, seed_floor and method_agreement.
CREATE OR REPLACE VIEW pair_matches AS
WITH seed_runs AS (
    SELECT s.model, s.primary_sae, s.replica_sae, r.id AS run_id, r.corpus, r.stat, r.sae_a = s.primary_sae AS primary_is_a
    FROM seed_pairs s
    JOIN correlation_runs r ON (r.sae_a = s.primary_sae AND r.sae_b = s.replica_sae)
                            OR (r.sae_a = s.replica_sae AND r.sae_b = s.primary_sae)
    QUALIFY row_number() OVER (PARTITION BY s.primary_sae, s.replica_sae, r.corpus, r.stat ORDER BY primary_is_a DESC, r.id DESC) = 1
)
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, e.run_id, e.side, e.sae, e.match_sae, e.feature, e.match, e.r
FROM edge_matches e
UNION ALL
SELECT s.model, s.model, 'seed', s.corpus, s.stat, s.run_id,
       CASE WHEN (m.side = 'a') = s.primary_is_a THEN 'parent' ELSE 'child' END,
       CASE WHEN (m.side = 'a') = s.primary_is_a THEN s.primary_sae ELSE s.replica_sae END,
       CASE WHEN (m.side = 'a') = s.primary_is_a THEN s.replica_sae ELSE s.primary_sae END,
       m.feature, m.match, m.r
FROM seed_runs s
JOIN best_matches m ON m.run_id = s.run_id;
