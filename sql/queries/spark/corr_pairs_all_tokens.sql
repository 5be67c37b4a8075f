-- all_tokens r of every co-firing pair (Spark SQL), as sql/224_corr_block_all_tokens.sql:
-- r = Σ v_a·v_b − u_a·u_b. Views: rows_a, rows_b (corr_normalised.sql), stats_a, stats_b.
-- The pair is grouped as one BIGINT (feature_a·2³² + feature_b; feature ids are below 2³¹): on two keys
-- Spark's hash aggregate spilled 2.1 GB and fell back to sorting; on one this step took 47 s instead of
-- 71 s (100k tokens × 4,096 features, local[1]).
WITH sums AS (
    SELECT a.feature * 4294967296 + b.feature AS pair, sum(a.x * b.x) AS s
    FROM rows_a a
    JOIN rows_b b ON a.key = b.key
    GROUP BY 1
), split AS (
    SELECT pair DIV 4294967296 AS feature_a, pair % 4294967296 AS feature_b, s FROM sums
)
SELECT feature_a, feature_b, least(greatest(s - sa.u * sb.u, -1D), 1D) AS r, sa.rank AS rank_a, sb.rank AS rank_b
FROM split
JOIN stats_a sa ON sa.feature = feature_a
JOIN stats_b sb ON sb.feature = feature_b
