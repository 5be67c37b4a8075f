-- Is the merged model's accuracy over t monotone in the expected direction? On model_a's data it
-- should fall as t moves toward model_b, on model_b's data it should rise.
CREATE OR REPLACE VIEW merge_sweep_monotone AS
WITH curve AS (
    SELECT model_a, model_b, method, eval_set, t, accuracy,
           accuracy - lag(accuracy) OVER (PARTITION BY model_a, model_b, method, eval_set ORDER BY t) AS change
    FROM merge_sweep
    WHERE evaluated = 'merge'
)
SELECT model_a, model_b, method, eval_set,
       CASE WHEN eval_set = model_a THEN 'falls' ELSE 'rises' END AS expected,
       bool_and(CASE WHEN eval_set = model_a THEN coalesce(change, 0) <= 0
                     ELSE coalesce(change, 0) >= 0 END) AS monotone,
       count(*) AS points,
       arg_min(accuracy, t) AS accuracy_at_t0,
       arg_max(accuracy, t) AS accuracy_at_t1
FROM curve
GROUP BY model_a, model_b, method, eval_set
ORDER BY model_a, model_b, method, eval_set;
