-- The features the report links to: those its Figures 3-4 show (the same showcase_matches call as the
-- report) and those of its disagreement tables (method_disagreements, 2 per edge and slice), with partners.
SELECT DISTINCT parent_sae, parent_feature, child_sae, child_feature FROM showcase_matches(n := 2)
UNION
SELECT p.sae, d.feature, c.sae, m.match
FROM method_disagreements(n := 2) d
JOIN primary_saes p ON p.model = d.parent
JOIN primary_saes c ON c.model = d.child
CROSS JOIN (SELECT unnest([d.match_a, d.match_b]) AS match) m
WHERE d.relation <> 'seed' AND d.method_a = 'all_tokens' AND m.match IS NOT NULL;
