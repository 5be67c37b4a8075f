-- What one block's pairs (from corr_block_all_tokens or corr_block_moments) leave behind, so the
-- pairs themselves never leave the query: kind 'pair' rows are the pairs with r >= r_floor
-- (feature = feature_a, match = feature_b); kind 'a' / 'b' rows give each feature of that side
-- its best partner in the block, its number of partners n, and a bitmask of which of the mask_bits
-- lowest-ranked partners it co-fires with (bit rank−1). Masks of several blocks combine with
-- bit_or, best partners with arg_max. pairs_table is read three times: the SQL engine passes
-- a MATERIALIZED CTE.
CREATE OR REPLACE MACRO corr_block_summary(pairs_table, r_floor, mask_bits) AS TABLE
SELECT 'pair' AS kind, feature_a AS feature, feature_b AS match, r, NULL::UBIGINT AS mask, 1::BIGINT AS n
FROM query_table(pairs_table)
WHERE r >= r_floor
UNION ALL
SELECT 'a', feature_a, arg_max(feature_b, r), max(r),
       bit_or(CASE WHEN rank_b <= mask_bits THEN 1::UBIGINT << (rank_b - 1)::UBIGINT ELSE 0::UBIGINT END), count(*)
FROM query_table(pairs_table)
GROUP BY feature_a
UNION ALL
SELECT 'b', feature_b, arg_max(feature_a, r), max(r),
       bit_or(CASE WHEN rank_a <= mask_bits THEN 1::UBIGINT << (rank_a - 1)::UBIGINT ELSE 0::UBIGINT END), count(*)
FROM query_table(pairs_table)
GROUP BY feature_b;
