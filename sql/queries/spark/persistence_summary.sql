-- persistence_summary(threshold, stat) of sql/205_persistence_summary_macro.sql in Spark SQL, for a
-- catalog exported with `featstore export --engine-layout DIR` (featstore.engines.spark.persistence_summary
-- registers each DIR/<table>.parquet as a view of that name). Per lineage edge and corpus, from the
-- correlation run of the two models' primary SAEs (either orientation; the parent as sae_a wins): parent
-- features persisting / disappearing / dead / constant and child features persisting / emerging / dead /
-- constant at r >= :threshold (constant: it fires, view `fired`, but has no r), and the share persisting
-- among the features with an r. Parameters: :threshold (DOUBLE), :stat (STRING).
WITH primary_saes AS (
    SELECT model, sae
    FROM (SELECT model, id AS sae, row_number() OVER (PARTITION BY model ORDER BY created_at DESC, id DESC) AS k
          FROM saes WHERE is_primary)
    WHERE k = 1
), edge_runs AS (
    SELECT *
    FROM (SELECT l.parent, l.child, l.relation, r.id AS run_id, r.corpus, r.stat, r.sae_a, r.sae_b, r.sae_a = p.sae AS parent_is_a,
                 row_number() OVER (PARTITION BY l.parent, l.child, r.corpus, r.stat
                                    ORDER BY CASE WHEN r.sae_a = p.sae THEN 0 ELSE 1 END, r.id DESC) AS k
          FROM lineage l
          JOIN primary_saes p ON p.model = l.parent
          JOIN primary_saes c ON c.model = l.child
          JOIN correlation_runs r ON (r.sae_a = p.sae AND r.sae_b = c.sae) OR (r.sae_a = c.sae AND r.sae_b = p.sae)
          WHERE r.stat = :stat)
    WHERE k = 1
), statuses AS (
    SELECT e.parent, e.child, e.relation, e.corpus, e.stat,
           CASE WHEN (m.side = 'a') = e.parent_is_a THEN 'parent' ELSE 'child' END AS side,
           CASE WHEN m.r IS NULL AND f.feature IS NULL THEN 'dead'
                WHEN m.r IS NULL THEN 'constant'
                WHEN m.r >= :threshold THEN 'persists'
                WHEN (m.side = 'a') = e.parent_is_a THEN 'disappears'
                ELSE 'emerges' END AS status
    FROM edge_runs e
    JOIN best_matches m ON m.run_id = e.run_id
    LEFT JOIN fired f ON f.sae = CASE WHEN m.side = 'a' THEN e.sae_a ELSE e.sae_b END AND f.corpus = e.corpus
                     AND f.feature = m.feature
), counts AS (
    SELECT parent, child, relation, corpus, stat,
           count_if(side = 'parent' AND status = 'persists') AS parent_persist,
           count_if(side = 'parent' AND status = 'disappears') AS parent_disappear,
           count_if(side = 'parent' AND status = 'dead') AS parent_dead,
           count_if(side = 'parent' AND status = 'constant') AS parent_constant,
           count_if(side = 'child' AND status = 'persists') AS child_persist,
           count_if(side = 'child' AND status = 'emerges') AS child_emerge,
           count_if(side = 'child' AND status = 'dead') AS child_dead,
           count_if(side = 'child' AND status = 'constant') AS child_constant
    FROM statuses
    GROUP BY parent, child, relation, corpus, stat
)
SELECT parent, child, relation, corpus, stat, CAST(:threshold AS DOUBLE) AS threshold,
       parent_persist, parent_disappear, parent_dead, parent_constant, child_persist, child_emerge, child_dead, child_constant,
       parent_persist / nullif(parent_persist + parent_disappear, 0) AS parent_share_persisting,
       child_persist / nullif(child_persist + child_emerge, 0) AS child_share_persisting
FROM counts
ORDER BY parent, child, corpus
