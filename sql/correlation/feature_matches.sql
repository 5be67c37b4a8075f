-- best_matches with the run they belong to spelled out: for every feature of both SAEs of every
-- correlation run, its SAE, its best match in the other SAE, and r (NULL: the feature never fires).
CREATE OR REPLACE VIEW feature_matches AS
SELECT m.run_id, r.corpus, r.stat,
       CASE m.side WHEN 'a' THEN r.sae_a ELSE r.sae_b END AS sae,
       m.feature,
       CASE m.side WHEN 'a' THEN r.sae_b ELSE r.sae_a END AS match_sae,
       m.match, m.r, m.side
FROM best_matches m
JOIN correlation_runs r ON r.id = m.run_id;
