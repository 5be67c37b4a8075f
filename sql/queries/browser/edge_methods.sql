-- How the match methods agree with activation r on edge $parent -> $child on corpus $corpus (edge_agreement,
-- method_a all_tokens): the edge page's methods table.
SELECT method_b AS method, live_features, persisting_a AS persisting_r, persisting_b AS persisting, persisting_both,
       same_match, agreement
FROM edge_agreement
WHERE parent = $parent AND child = $child AND corpus = $corpus AND method_a = 'all_tokens'
ORDER BY method_b;
