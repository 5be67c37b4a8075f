-- The parent features of edge $parent -> $child on corpus $corpus on which activation r and another method
-- disagree most (method_disagreements, 5 per method): the edge page links each to its pages.
SELECT method_b AS method, rank, feature, match_a AS match_r, score_a AS r, match_b AS match, score_b AS score, top_tokens
FROM method_disagreements(n := 5)
WHERE parent = $parent AND child = $child AND corpus = $corpus AND method_a = 'all_tokens'
ORDER BY method_b, rank;
