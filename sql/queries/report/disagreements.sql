-- The $n lineage-edge features per edge and slice on which activation r (all_tokens) and method
-- $method disagree most, with their top tokens and the two primary SAEs (for links to feature pages):
-- the report's agreement section.
SELECT d.parent, d.child, d.corpus, d.method_a, d.method_b, d.rank, d.feature, d.match_a, d.score_a, d.match_b,
       d.score_b, d.top_tokens, p.sae AS parent_sae, c.sae AS child_sae
FROM method_disagreements(n := $n) d
JOIN primary_saes p ON p.model = d.parent
JOIN primary_saes c ON c.model = d.child
WHERE d.relation <> 'seed' AND d.method_a = 'all_tokens' AND d.method_b = $method;
