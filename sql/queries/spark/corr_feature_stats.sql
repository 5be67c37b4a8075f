-- all_tokens statistics per feature of one side over all :n_tokens occurrences (Spark SQL), as
-- sql/222_corr_feature_stats.sql: firing count n, centred norm, u = Σx / (norm·√N) and the rank of
-- (u, feature). View: raw (key, feature, x).
WITH sums AS (
    SELECT feature, count(*) AS n, sum(CAST(x AS DOUBLE)) AS sx, sum(CAST(x AS DOUBLE) * x) AS sxx
    FROM raw
    GROUP BY feature
), norms AS (
    SELECT feature, n, sx, sxx, sqrt(greatest(sxx - sx * sx / :n_tokens, 0)) AS norm FROM sums
)
SELECT feature, n, norm, sx / (norm * sqrt(:n_tokens)) AS u,
       row_number() OVER (ORDER BY sx / (norm * sqrt(:n_tokens)), feature) AS rank
FROM norms
WHERE norm * norm > 1e-9 * sxx
