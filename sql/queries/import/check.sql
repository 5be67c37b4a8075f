-- Every kind of bad row of import_rows, counted in one pass: nulls, NaN/inf, features outside
-- 0..$d_sae-1, and rows outside the corpus (unknown (doc_id, pos), or tok outside [$lo, $hi)).
SELECT count(*) AS n_rows,
       count(*) FILTER (WHERE act > 0) AS n_positive,
       count(*) FILTER (WHERE has_null) AS nulls,
       count(*) FILTER (WHERE NOT isfinite(act)) AS non_finite,
       count(*) FILTER (WHERE feature < 0 OR feature >= $d_sae) AS bad_feature,
       count(*) FILTER (WHERE CASE WHEN known IS NULL THEN tok < $lo OR tok >= $hi ELSE NOT known END) AS bad_position
FROM import_rows;
