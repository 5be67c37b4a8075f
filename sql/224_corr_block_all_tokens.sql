-- all_tokens Pearson r of every co-firing pair (feature_a in one block, feature_b) from the
-- pre-normalised rows v = x / ‖x − mean‖ (see corr_feature_stats): the pair aggregate is one SUM.
-- rank_a, rank_b feed the search for the best never-co-firing partner.
CREATE OR REPLACE MACRO corr_block_all_tokens(rows_a, rows_b, stats_a, stats_b, lo, hi) AS TABLE
WITH sums AS (
    SELECT a.feature AS feature_a, b.feature AS feature_b, sum(a.v * b.v) AS s
    FROM query_table(rows_a) a JOIN query_table(rows_b) b USING (key)
    WHERE a.feature BETWEEN lo AND hi
    GROUP BY a.feature, b.feature
)
SELECT feature_a, feature_b, least(greatest(s - sa.u * sb.u, -1), 1) AS r, sa.rank AS rank_a, sb.rank AS rank_b
FROM sums
JOIN query_table(stats_a) sa ON sa.feature = feature_a
JOIN query_table(stats_b) sb ON sb.feature = feature_b;
