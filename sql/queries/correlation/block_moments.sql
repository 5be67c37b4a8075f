-- One block of side-a features (table $block_a) against side b from per-pair moments over the keys
-- where both fire (statistics cofiring and token_type_mean) on at least $min_n keys, summarised
-- inside the one query.
INSERT INTO corr_work.found
WITH pairs AS MATERIALIZED (
    SELECT * FROM corr_block_moments($block_a, 'corr_work.lists_b', $min_n)
)
SELECT * FROM corr_block_summary('pairs', $r_floor, $mask_bits);
