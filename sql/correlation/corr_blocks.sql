-- Splits the features of side a into contiguous ranges [lo, hi] of about pairs_per_block co-firing
-- row pairs each (the size of the join), so each range's GROUP BY over feature pairs stays small
-- and fast. A feature's weight is the number of side-b rows on the keys where it fires (lists_b
-- from corr_key_lists).
CREATE OR REPLACE MACRO corr_blocks(rows_a, lists_b, pairs_per_block) AS TABLE
WITH weights AS (
    SELECT a.feature, sum(b.n) AS pairs
    FROM query_table(rows_a) a JOIN query_table(lists_b) b USING (key)
    GROUP BY a.feature
), numbered AS (
    SELECT feature, pairs,
           coalesce(sum(pairs) OVER (ORDER BY feature ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
               // pairs_per_block AS block
    FROM weights
)
SELECT row_number() OVER (ORDER BY block) - 1 AS block, min(feature) AS lo, max(feature) AS hi, sum(pairs)::BIGINT AS pairs
FROM numbered
GROUP BY numbered.block;
