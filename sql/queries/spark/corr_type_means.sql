-- token_type_mean rows of one side (Spark SQL; featstore.engines.spark): the mean activation of each
-- feature per token type over the occurrences where it fires, as sql/221_corr_type_means.sql.
-- Views: acts (tok, feature, act), tokens (tok, token_id).
SELECT t.token_id AS key, a.feature, CAST(avg(a.act) AS FLOAT) AS x
FROM acts a
JOIN tokens t ON t.tok = a.tok
GROUP BY t.token_id, a.feature
