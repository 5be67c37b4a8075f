-- Values that would corrupt a statistic, in one side's raw rows: non-finite or non-positive x, the
-- largest feature, and (when keys are toks) keys outside the corpus's tok range [$lo, $hi).
SELECT count(*) FILTER (WHERE NOT isfinite(x) OR x <= 0) AS bad,
       max(feature) AS top_feature,
       count(*) FILTER (WHERE $by_tok AND (key < $lo OR key >= $hi)) AS outside
FROM corr_work.raw_{{side}};
