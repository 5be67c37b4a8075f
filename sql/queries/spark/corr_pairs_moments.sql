-- cofiring / token_type_mean r of every pair over the keys where both fire (Spark SQL), as
-- sql/225_corr_block_moments.sql; undefined pairs (fewer than min_n keys, no variance) have no row.
-- Views: raw_a, raw_b (key, feature, x). The pair is grouped as one BIGINT, as in corr_pairs_all_tokens.sql.
WITH m AS (
    SELECT a.feature * 4294967296 + b.feature AS pair, count(*) AS n,
           sum(CAST(a.x AS DOUBLE)) AS sx, sum(CAST(b.x AS DOUBLE)) AS sy,
           sum(CAST(a.x AS DOUBLE) * a.x) AS sxx, sum(CAST(b.x AS DOUBLE) * b.x) AS syy,
           sum(CAST(a.x AS DOUBLE) * b.x) AS sxy
    FROM raw_a a
    JOIN raw_b b ON a.key = b.key
    GROUP BY 1
), centred AS (
    SELECT pair DIV 4294967296 AS feature_a, pair % 4294967296 AS feature_b,
           n * sxy - sx * sy AS cov, n * sxx - sx * sx AS var_x, n * syy - sy * sy AS var_y,
           n * sxx AS scale_x, n * syy AS scale_y
    FROM m
    WHERE n >= :min_n
)
SELECT feature_a, feature_b, least(greatest(cov / sqrt(var_x * var_y), -1D), 1D) AS r,
       CAST(NULL AS INT) AS rank_a, CAST(NULL AS INT) AS rank_b
FROM centred
WHERE var_x > 1e-9 * scale_x AND var_y > 1e-9 * scale_y
