-- all_tokens rows of one side divided by their feature's centred norm (Spark SQL), as
-- sql/227_corr_normalised.sql. Views: raw (key, feature, x), stats (corr_feature_stats.sql).
SELECT r.key, r.feature, CAST(r.x / s.norm AS FLOAT) AS x
FROM raw r
JOIN stats s ON s.feature = r.feature
