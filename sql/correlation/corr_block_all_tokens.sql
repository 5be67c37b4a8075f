-- all_tokens Pearson r of every co-firing pair (feature_a of one block, feature_b) from the
-- pre-normalised values x / ‖x − mean‖ (see corr_feature_stats): the pair aggregate is one SUM.
-- block_a holds the block's side-a rows, lists_b side b per key (corr_key_lists); rank_a, rank_b
-- feed the search for the best never-co-firing partner.
CREATE OR REPLACE MACRO corr_block_all_tokens(block_a, lists_b, stats_a, stats_b) AS TABLE
WITH products AS (
    SELECT a.feature AS feature_a, a.x AS x, unnest(b.features) AS feature_b, unnest(b.xs) AS y
    FROM query_table(block_a) a JOIN query_table(lists_b) b USING (key)
), sums AS (
    SELECT feature_a, feature_b, sum(x * y) AS s FROM products GROUP BY feature_a, feature_b
)
SELECT feature_a, feature_b, least(greatest(s - sa.u * sb.u, -1), 1) AS r, sa.rank AS rank_a, sb.rank AS rank_b
FROM sums
JOIN query_table(stats_a) sa ON sa.feature = feature_a
JOIN query_table(stats_b) sb ON sb.feature = feature_b;
