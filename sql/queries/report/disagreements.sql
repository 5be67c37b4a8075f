-- The $n lineage-edge features per edge and slice on which activation r (all_tokens) and method
-- $method disagree most, with their top tokens: the report's agreement section.
SELECT parent, child, corpus, method_a, method_b, rank, feature, match_a, score_a, match_b, score_b, top_tokens
FROM method_disagreements(n := $n)
WHERE relation <> 'seed' AND method_a = 'all_tokens' AND method_b = $method;
