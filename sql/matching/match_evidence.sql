-- The evidence for every compared pair of SAEs: per candidate feature pair, the score of each match
-- method (match_methods) that was run on them. Correlation statistics contribute their pairs with
-- r >= the run's floor, weight cosines each feature's top-k partners plus every pair above the
-- floor, Jaccard the co-firing pairs above the floor plus each feature's best. corpus is NULL for
-- data-free methods.
--   SELECT method, count(*) FROM match_evidence WHERE sae_a = 'base-sae' GROUP BY ALL;
CREATE OR REPLACE VIEW match_evidence AS
SELECT s.source, s.run_id, s.sae_a, s.sae_b, s.corpus, s.method, c.feature_a, c.feature_b, c.r AS score
FROM match_sources s
JOIN correlations c ON s.source = 'correlation' AND c.run_id = s.run_id
UNION ALL
SELECT s.source, s.run_id, s.sae_a, s.sae_b, s.corpus, s.method, p.feature_a, p.feature_b, p.score
FROM match_sources s
JOIN match_pairs p ON s.source = 'match' AND p.run_id = s.run_id;
