-- Spark SQL: the pairs at r >= :floor (view pairs_all), tagged 'pairs' in the one results file the
-- Spark engine writes (beside each side's best matches); r narrowed to FLOAT as correlations stores it.
SELECT 'pairs' AS kind, feature_a AS feature, feature_b AS match, CAST(r AS FLOAT) AS r
FROM pairs_all WHERE r >= :floor
