-- Does the way SAEs are initialised decide what "persists"? Per lineage edge, corpus, match method and the
-- initialisation of the compared pair of SAEs: the parent SAE's live features (firing on the corpus) and how
-- many the method calls persisting into the child's SAE at its match_methods.default_threshold (the causal
-- method: over the features it checked). init is 'lineage' when the child's SAE started from the parent's
-- trained one (saes.init_from), 'shared' when both started from the same random weights (the same seed,
-- architecture and shape), else 'independent'. floor_share is the parent model's seed floor under the same
-- method on the same corpus (its primary SAE against its seed replicas, mean over them): what no
-- fine-tune at all gives.
--   SELECT child, method, init, share_persisting, floor_share FROM init_control WHERE corpus = 'eval-lua';
CREATE OR REPLACE VIEW init_control AS
WITH pairs AS (
    SELECT l.parent, l.child, l.relation, a.id AS parent_sae, b.id AS child_sae,
           CASE WHEN b.init_from = a.id THEN 'lineage'
                WHEN a.seed = b.seed AND a.architecture = b.architecture AND a.d_in = b.d_in AND a.d_sae = b.d_sae
                    THEN 'shared'
                ELSE 'independent' END AS init
    FROM lineage l
    JOIN saes a ON a.model = l.parent AND a.init_from IS NULL AND a.seed_of IS NULL
    JOIN saes b ON b.model = l.child AND b.seed_of IS NULL
    UNION ALL
    SELECT model, model, 'seed', primary_sae, replica_sae, 'seed' FROM seed_pairs
), runs AS (
    SELECT DISTINCT sae, match_sae, corpus, method FROM match_best
), verdicts AS (
    SELECT p.parent, p.child, p.relation, p.init, p.parent_sae, p.child_sae, f.corpus, r.method, f.feature,
           coalesce(m.score >= t.default_threshold, false) AS persists
    FROM pairs p
    JOIN runs r ON r.sae = p.parent_sae AND r.match_sae = p.child_sae
    JOIN match_methods t ON t.name = r.method
    JOIN feature_stats f ON f.sae = p.parent_sae AND f.n_firing > 0 AND f.corpus = coalesce(r.corpus, f.corpus)
    LEFT JOIN match_best m ON m.sae = p.parent_sae AND m.match_sae = p.child_sae AND m.method = r.method
                          AND m.corpus IS NOT DISTINCT FROM r.corpus AND m.feature = f.feature
    WHERE t.source <> 'causal' OR m.match IS NOT NULL
), shares AS (
    SELECT parent, child, relation, init, parent_sae, child_sae, corpus, method,
           count(*) AS live_features,
           count(*) FILTER (WHERE persists) AS persisting,
           count(*) FILTER (WHERE persists) / count(*) AS share_persisting
    FROM verdicts
    GROUP BY ALL
), floors AS (
    SELECT parent AS model, corpus, method, avg(share_persisting) AS floor_share
    FROM shares WHERE init = 'seed'
    GROUP BY ALL
)
SELECT s.*, f.floor_share
FROM shares s
LEFT JOIN floors f ON f.model = s.parent AND f.corpus = s.corpus AND f.method = s.method
WHERE s.init <> 'seed'
ORDER BY s.parent, s.child, s.corpus, s.method, s.init;
