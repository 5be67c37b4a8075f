-- Per lineage-initialised SAE and corpus slice, over the features that fired in the SAE it started from:
-- how many persist by drift (decoder cosine >= 0.9, still firing), moved away (cosine < 0.5) or fell
-- silent, the median decoder cosine and firing-rate ratio, and beside them how many persist by the
-- paper's method into the child's independent SAE (r >= 0.8) and how many by both.
--   SELECT * FROM drift_summary;
CREATE OR REPLACE VIEW drift_summary AS
SELECT sae, model, init_from, init_model, corpus,
       count(*) AS live_features,
       count(*) FILTER (WHERE persists) AS persisting_by_drift,
       count(*) FILTER (WHERE decoder_cosine < 0.5) AS moved,
       count(*) FILTER (WHERE density = 0) AS silenced,
       round(median(decoder_cosine), 3) AS median_decoder_cosine,
       round(median(density / init_density), 3) AS median_density_ratio,
       count(*) FILTER (WHERE independent_r >= 0.8) AS persisting_independent,
       count(*) FILTER (WHERE persists AND independent_r >= 0.8) AS persisting_both
FROM lineage_drift
WHERE init_density > 0
GROUP BY ALL
ORDER BY model, sae, corpus;
