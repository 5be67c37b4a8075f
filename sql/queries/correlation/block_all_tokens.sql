-- One block of side-a features (table $block_a) against side b, statistic all_tokens: the pairs are
-- summarised inside the one query (corr_block_summary keeps r >= $r_floor and each feature's best).
INSERT INTO corr_work.found
WITH pairs AS MATERIALIZED (
    SELECT * FROM corr_block_all_tokens($block_a, 'corr_work.lists_b', 'corr_work.stats_a', 'corr_work.stats_b')
)
SELECT * FROM corr_block_summary('pairs', $r_floor, $mask_bits);
