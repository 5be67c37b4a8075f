SELECT kind, explainer, simulator, features,
       round(mean_score, 3) AS mean, round(median_score, 3) AS median,
       round(share_at_least_half, 3) AS share_ge_half
FROM score_summary
WHERE sae = $sae AND corpus = $corpus;
