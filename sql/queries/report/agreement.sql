-- How match methods agree per edge and slice, against the all_tokens correlation (view edge_agreement).
SELECT * FROM edge_agreement WHERE 'all_tokens' IN (method_a, method_b);
