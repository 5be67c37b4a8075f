-- Every SAE with its model, size, weights folder and metrics: the browser's catalog snapshot.
SELECT id, model, hook_point, layer, d_in, d_sae, architecture, seed, path, is_primary, metrics
FROM saes
ORDER BY created_at, id
