-- How many of match methods $methods have a run for ($sae_a, $sae_b): the match step is done when all have.
SELECT count(DISTINCT method) FROM match_runs WHERE sae_a = $sae_a AND sae_b = $sae_b AND list_contains($methods, method);
