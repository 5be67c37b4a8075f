-- Each model's seed-noise floor per corpus and threshold (averaged over its replicas): the dashed
-- curves of the persistence-vs-threshold plot.
SELECT model, corpus, threshold, avg(primary_share_persisting) AS share
FROM seed_floor
GROUP BY ALL
ORDER BY ALL;
