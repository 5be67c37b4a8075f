-- The correlation runs of an SAE pair removed from the experiment (`featstore run --prune`), with
-- their pairs and best matches.
DELETE FROM correlations WHERE run_id IN (SELECT id FROM correlation_runs WHERE sae_a = $sae_a AND sae_b = $sae_b);
DELETE FROM best_matches WHERE run_id IN (SELECT id FROM correlation_runs WHERE sae_a = $sae_a AND sae_b = $sae_b);
DELETE FROM correlation_runs WHERE sae_a = $sae_a AND sae_b = $sae_b;
