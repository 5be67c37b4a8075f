-- Per SAE, corpus and feature: how often and how strongly it fires. Every feature of the SAE has a
-- row, so a feature that never fires on the corpus shows n_firing 0 (dead there) and NULL acts.
-- density = n_firing / token occurrences of the corpus; mean_act is over the firing occurrences.
CREATE OR REPLACE VIEW feature_stats AS
WITH fired AS (
    SELECT sae, corpus, feature, count(*) AS n_firing, avg(act) AS mean_act, max(act) AS max_act
    FROM activations
    GROUP BY sae, corpus, feature
), dictionary AS (
    SELECT p.sae, p.corpus, p.n_tokens, unnest(range(s.d_sae))::UINTEGER AS feature
    FROM activation_partitions p JOIN saes s ON s.id = p.sae
)
SELECT d.sae, d.corpus, d.feature,
       coalesce(f.n_firing, 0) AS n_firing,
       coalesce(f.n_firing, 0) / d.n_tokens AS density,
       f.mean_act::FLOAT AS mean_act,
       f.max_act AS max_act
FROM dictionary d
LEFT JOIN fired f ON f.sae = d.sae AND f.corpus = d.corpus AND f.feature = d.feature;
