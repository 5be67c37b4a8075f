-- For one block of pairs, per feature of one side (by_b false: side a, true: side b) its best
-- co-firing partner and a bitmask of which of the mask_bits lowest-ranked partners it co-fires
-- with (bit rank−1). Masks of several blocks combine with bit_or, best partners with arg_max.
CREATE OR REPLACE MACRO corr_block_best(block_table, by_b, mask_bits) AS TABLE
WITH sided AS (
    SELECT CASE WHEN by_b THEN feature_b ELSE feature_a END AS feature,
           CASE WHEN by_b THEN feature_a ELSE feature_b END AS partner,
           CASE WHEN by_b THEN rank_a ELSE rank_b END AS partner_rank,
           r
    FROM query_table(block_table)
)
SELECT feature, arg_max(partner, r) AS match, max(r) AS r,
       bit_or(CASE WHEN partner_rank <= mask_bits THEN 1::UBIGINT << (partner_rank - 1)::INTEGER
                   ELSE 0::UBIGINT END) AS mask
FROM sided
GROUP BY feature;
