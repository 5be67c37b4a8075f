-- The match each policy gives a feature under each method, from either side of the SAE pair:
--   best        its best partner (many-to-one: several features may share one partner; today's rule)
--   mutual      its best partner, only when that partner's best is the feature itself
--   one_to_one  its partner in the Hungarian assignment stored in match_assignments
-- A feature a policy leaves unmatched has no row.
CREATE OR REPLACE VIEW policy_matches AS
SELECT 'best' AS policy, b.corpus, b.method, b.sae, b.match_sae, b.feature, b.match, b.score
FROM match_best b
WHERE b.match IS NOT NULL
UNION ALL
SELECT 'mutual', m.corpus, m.method, m.sae, m.match_sae, m.feature, m.match, m.score
FROM match_best m
JOIN match_best r ON r.source = m.source AND r.run_id = m.run_id AND r.sae = m.match_sae
                 AND r.feature = m.match AND r.match = m.feature
UNION ALL
SELECT 'one_to_one', a.corpus, a.method, a.sae_a, a.sae_b, a.feature_a, a.feature_b, a.score FROM match_assignments a
UNION ALL
SELECT 'one_to_one', a.corpus, a.method, a.sae_b, a.sae_a, a.feature_b, a.feature_a, a.score FROM match_assignments a;
