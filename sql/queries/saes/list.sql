SELECT id, model, hook_point, layer, d_in, d_sae, architecture, l1_coeff, k, is_primary, metrics, path
FROM saes
ORDER BY model, id;
