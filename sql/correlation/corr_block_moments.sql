-- Pearson r of every pair (feature_a of one block, feature_b) over the keys where both fire
-- (statistics cofiring and token_type_mean): per pair n, Σx, Σy, Σx², Σy², Σxy. Fewer than min_n
-- shared keys (at least 2; with 2, r is always ±1) or no variance on either side: no row.
-- block_a holds the block's side-a rows, lists_b side b per key (corr_key_lists).
CREATE OR REPLACE MACRO corr_block_moments(block_a, lists_b, min_n) AS TABLE
WITH products AS (
    SELECT a.feature AS feature_a, a.x::DOUBLE AS x, unnest(b.features) AS feature_b, unnest(b.xs)::DOUBLE AS y
    FROM query_table(block_a) a JOIN query_table(lists_b) b USING (key)
), m AS (
    SELECT feature_a, feature_b, count(*) AS n, sum(x) AS sx, sum(y) AS sy,
           sum(x * x) AS sxx, sum(y * y) AS syy, sum(x * y) AS sxy
    FROM products
    GROUP BY feature_a, feature_b
), centred AS (
    SELECT feature_a, feature_b, n * sxy - sx * sy AS cov, n * sxx - sx * sx AS var_x, n * syy - sy * sy AS var_y,
           n * sxx AS scale_x, n * syy AS scale_y
    FROM m
    WHERE n >= greatest(min_n, 2)
)
SELECT feature_a, feature_b, least(greatest(cov / sqrt(var_x * var_y), -1), 1) AS r,
       NULL::UINTEGER AS rank_a, NULL::UINTEGER AS rank_b
FROM centred
WHERE var_x > 1e-9 * scale_x AND var_y > 1e-9 * scale_y;
