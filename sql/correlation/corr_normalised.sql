-- Occurrence rows with each activation divided by its feature's centred norm (corr_feature_stats),
-- so the all_tokens pair aggregate is a single SUM of products. Compact types keep the join small.
CREATE OR REPLACE MACRO corr_normalised(rows_table, stats_table) AS TABLE
SELECT r.key::UINTEGER AS key, r.feature::UINTEGER AS feature, (r.x / s.norm)::FLOAT AS x
FROM query_table(rows_table) r
JOIN query_table(stats_table) s USING (feature);
