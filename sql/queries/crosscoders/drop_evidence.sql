-- The crosscoder match evidence between SAEs of models $parent and $child (either orientation): its
-- runs, their pairs and their one-to-one assignments. Stale once the pair's crosscoder changes.
DELETE FROM match_pairs WHERE run_id IN (
    SELECT r.id FROM match_runs r JOIN saes a ON a.id = r.sae_a JOIN saes b ON b.id = r.sae_b
    WHERE r.method = 'crosscoder' AND [a.model, b.model] IN ([$parent, $child], [$child, $parent]));
DELETE FROM match_runs WHERE method = 'crosscoder' AND id IN (
    SELECT r.id FROM match_runs r JOIN saes a ON a.id = r.sae_a JOIN saes b ON b.id = r.sae_b
    WHERE [a.model, b.model] IN ([$parent, $child], [$child, $parent]));
DELETE FROM match_assignments WHERE method = 'crosscoder' AND (sae_a, sae_b) IN (
    SELECT (a.id, b.id) FROM saes a, saes b WHERE [a.model, b.model] IN ([$parent, $child], [$child, $parent]));
