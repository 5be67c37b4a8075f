-- Pearson r of every pair (feature_a in one block, feature_b) over the keys where both fire
-- (statistics cofiring and token_type_mean): per pair n, Σx, Σy, Σx², Σy², Σxy. Fewer than two
-- shared keys or no variance on either side leaves r undefined: no row (pandas' corr gives NaN).
CREATE OR REPLACE MACRO corr_block_moments(rows_a, rows_b, lo, hi) AS TABLE
WITH m AS (
    SELECT a.feature AS feature_a, b.feature AS feature_b, count(*) AS n,
           sum(a.x::DOUBLE) AS sx, sum(b.x::DOUBLE) AS sy,
           sum(a.x::DOUBLE * a.x) AS sxx, sum(b.x::DOUBLE * b.x) AS syy, sum(a.x::DOUBLE * b.x) AS sxy
    FROM query_table(rows_a) a JOIN query_table(rows_b) b USING (key)
    WHERE a.feature BETWEEN lo AND hi
    GROUP BY a.feature, b.feature
), centred AS (
    SELECT feature_a, feature_b, n * sxy - sx * sy AS cov, n * sxx - sx * sx AS var_x, n * syy - sy * sy AS var_y,
           n * sxx AS scale_x, n * syy AS scale_y
    FROM m
    WHERE n >= 2
)
SELECT feature_a, feature_b, least(greatest(cov / sqrt(var_x * var_y), -1), 1) AS r,
       NULL::BIGINT AS rank_a, NULL::BIGINT AS rank_b
FROM centred
WHERE var_x > 1e-9 * scale_x AND var_y > 1e-9 * scale_y;
