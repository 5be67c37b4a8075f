-- Every feature's best partner under each stored match method, seen from either SAE of the pair
-- (sae: the feature's SAE, match_sae: the other one). Correlation runs keep each feature's exact
-- best whatever its r (best_matches); other methods take the top candidate of match_pairs, so a
-- feature with no candidate (Jaccard: it never co-fires) has no row.
CREATE OR REPLACE VIEW match_best AS
SELECT s.source, s.run_id, s.corpus, s.method,
       CASE b.side WHEN 'a' THEN s.sae_a ELSE s.sae_b END AS sae,
       CASE b.side WHEN 'a' THEN s.sae_b ELSE s.sae_a END AS match_sae,
       b.feature, b.match, b.r AS score
FROM match_sources s
JOIN best_matches b ON s.source = 'correlation' AND b.run_id = s.run_id
UNION ALL
SELECT s.source, s.run_id, s.corpus, s.method, s.sae_a, s.sae_b, p.feature_a, p.feature_b, p.score
FROM match_sources s
JOIN match_pairs p ON s.source = 'match' AND p.run_id = s.run_id
QUALIFY row_number() OVER (PARTITION BY p.run_id, p.feature_a ORDER BY p.score DESC, p.feature_b) = 1
UNION ALL
SELECT s.source, s.run_id, s.corpus, s.method, s.sae_b, s.sae_a, p.feature_b, p.feature_a, p.score
FROM match_sources s
JOIN match_pairs p ON s.source = 'match' AND p.run_id = s.run_id
QUALIFY row_number() OVER (PARTITION BY p.run_id, p.feature_b ORDER BY p.score DESC, p.feature_a) = 1;
