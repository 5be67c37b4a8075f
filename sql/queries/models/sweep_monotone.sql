SELECT eval_set, monotone
FROM merge_sweep_monotone
WHERE model_a = $model_a AND model_b = $model_b AND method = $method;
