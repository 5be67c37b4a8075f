-- Every causal run per selection (view causal_summary) without its SAE ids: the report's agreement section.
SELECT * EXCLUDE (sae_a, sae_b) FROM causal_summary;
