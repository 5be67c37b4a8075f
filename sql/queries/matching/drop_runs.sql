-- Every match run naming SAE $sae on either side and/or run on corpus $corpus (NULL: any), with its
-- candidate pairs and causal checks, and the one-to-one assignments of the same SAEs and corpus. Weight runs have no
-- corpus, so dropping a corpus keeps them.
DELETE FROM causal_effects WHERE run_id IN (
    SELECT id FROM match_runs
    WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus));
DELETE FROM match_pairs WHERE run_id IN (
    SELECT id FROM match_runs
    WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus));
DELETE FROM match_runs
WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus);
DELETE FROM match_assignments
WHERE ($sae IS NULL OR sae_a = $sae OR sae_b = $sae) AND ($corpus IS NULL OR corpus = $corpus);
