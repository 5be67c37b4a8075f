-- all_tokens r of every co-firing pair (Spark SQL), as sql/224_corr_block_all_tokens.sql:
-- r = Σ v_a·v_b − u_a·u_b. Views: rows_a, rows_b (corr_normalised.sql), stats_a, stats_b.
WITH sums AS (
    SELECT a.feature AS feature_a, b.feature AS feature_b, sum(a.x * b.x) AS s
    FROM rows_a a
    JOIN rows_b b ON a.key = b.key
    GROUP BY a.feature, b.feature
)
SELECT feature_a, feature_b, least(greatest(s - sa.u * sb.u, -1D), 1D) AS r, sa.rank AS rank_a, sb.rank AS rank_b
FROM sums
JOIN stats_a sa ON sa.feature = feature_a
JOIN stats_b sb ON sb.feature = feature_b
