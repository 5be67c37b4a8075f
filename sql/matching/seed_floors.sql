-- The seed-noise floor at given thresholds: per model, corpus and seed replica, the share of the
-- primary SAE's live features that "persist" into the replica (an SAE differing only in its seed)
-- and the share of the replica's that persist into the primary, under a method and policy. A
-- persistence share means little until it stands beside this: what no fine-tune at all gives.
--   SELECT * FROM seed_floors(thresholds := [0.6, 0.8], method := 'decoder_cosine');
CREATE OR REPLACE MACRO seed_floors(thresholds := [0.8], stat := 'all_tokens', method := NULL, policy := 'best') AS TABLE
SELECT m.parent AS model, m.corpus, m.stat, m.method, m.policy, t.threshold,
       any_value(m.sae) FILTER (WHERE m.side = 'parent') AS primary_sae,
       any_value(m.sae) FILTER (WHERE m.side = 'child') AS replica_sae,
       count(*) FILTER (WHERE m.side = 'parent' AND m.fires) AS primary_live,
       count(*) FILTER (WHERE m.side = 'child' AND m.fires) AS replica_live,
       count(*) FILTER (WHERE m.side = 'parent' AND m.fires AND m.r >= t.threshold) / nullif(primary_live, 0)
           AS primary_share_persisting,
       count(*) FILTER (WHERE m.side = 'child' AND m.fires AND m.r >= t.threshold) / nullif(replica_live, 0)
           AS replica_share_persisting
FROM method_matches(stat := stat, policy := policy) m
CROSS JOIN (SELECT unnest(thresholds)::DOUBLE AS threshold) t
WHERE m.relation = 'seed' AND m.method = match_method(coalesce(method, stat))
GROUP BY m.parent, m.corpus, m.stat, m.method, m.policy, m.run_id, t.threshold
ORDER BY model, m.corpus, replica_sae, t.threshold;
