-- Per eval set of a sweep, whether the merge's accuracy moves the expected way (model_a's data first).
SELECT eval_set, monotone
FROM merge_sweep_monotone
WHERE model_a = $model_a AND model_b = $model_b AND method = $method
ORDER BY eval_set = model_b, eval_set;
