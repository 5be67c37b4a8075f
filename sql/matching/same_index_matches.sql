-- The initialisation's imprint on the matches: per compared pair (lineage edges, and seed pairs with
-- relation 'seed'), corpus, statistic and method, how many of the parent's (primary's) live features
-- persist (match scores >= threshold) and how many of those match the feature of the same index on
-- the other side. SAEs that start from one set of weights keep their features index-aligned, so a
-- same-index share well above chance (1 / d_sae of the other SAE) is that start, not persistence.
--   SELECT * FROM same_index_matches(threshold := 0.7, method := 'encoder_cosine');
CREATE OR REPLACE MACRO same_index_matches(threshold := 0.8, stat := 'all_tokens', method := NULL, policy := 'best') AS TABLE
SELECT m.parent, m.child, m.relation, m.corpus, m.stat, m.method, m.policy, threshold::DOUBLE AS threshold,
       m.sae, m.match_sae,
       count(*) FILTER (WHERE m.fires AND m.r >= threshold) AS persisting,
       count(*) FILTER (WHERE m.fires AND m.r >= threshold AND m.match = m.feature) AS same_index,
       same_index / nullif(persisting, 0) AS same_index_share,
       1 / any_value(s.d_sae) AS chance
FROM method_matches(stat := stat, policy := policy) m
JOIN saes s ON s.id = m.match_sae
WHERE m.side = 'parent' AND m.method = match_method(coalesce(method, stat))
GROUP BY m.parent, m.child, m.relation, m.corpus, m.stat, m.method, m.policy, m.sae, m.match_sae
ORDER BY m.relation = 'seed', m.parent, m.child, m.corpus, m.match_sae;
-- same_index_matches at the paper's threshold 0.8 on the all_tokens statistic, best match.
CREATE OR REPLACE VIEW same_index_matches AS SELECT * FROM same_index_matches();
