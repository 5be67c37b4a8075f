-- Figure 5's curves: every merge sweep's evaluations, in t order per (model_a, model_b, method).
SELECT * FROM merge_sweep ORDER BY model_a, model_b, method, t;
