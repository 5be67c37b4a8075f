-- Every correlation run naming SAE $sae on either side and/or run on corpus $corpus (NULL: any),
-- with its pairs and best matches.
DELETE FROM correlations WHERE run_id IN (
    SELECT id FROM correlation_runs
    WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus));
DELETE FROM best_matches WHERE run_id IN (
    SELECT id FROM correlation_runs
    WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus));
DELETE FROM correlation_runs
WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus);
