-- Each feature of a lineage-initialised SAE (saes.init_from) on every corpus slice both it and the SAE it
-- started from have activations on: how far it moved from the feature it started as (decoder and encoder
-- cosine with their initial values, sae_drift), how its firing rate changed (the init SAE's feature on its
-- model against this SAE's on its model, same tokens), and `persists`: decoder cosine >= 0.9 and still
-- firing. Beside it, the paper's answer for the same parent feature: its best match in the child's
-- independently trained primary SAE (edge_matches, all_tokens), where that edge was correlated there.
--   SELECT feature, decoder_cosine, init_density, density, independent_r FROM lineage_drift ORDER BY decoder_cosine;
CREATE OR REPLACE VIEW lineage_drift AS
SELECT s.id AS sae, s.model, s.init_from, i.model AS init_model, f.corpus, d.feature,
       d.decoder_cosine, d.encoder_cosine,
       p.density AS init_density, f.density, f.density - p.density AS density_change,
       d.decoder_cosine >= 0.9 AND f.density > 0 AS persists,
       e.match AS independent_match, e.r AS independent_r
FROM saes s
JOIN saes i ON i.id = s.init_from
JOIN sae_drift d ON d.sae = s.id
JOIN feature_stats f ON f.sae = s.id AND f.feature = d.feature
JOIN feature_stats p ON p.sae = s.init_from AND p.corpus = f.corpus AND p.feature = d.feature
LEFT JOIN edge_matches e ON e.parent = i.model AND e.child = s.model AND e.side = 'parent' AND e.sae = s.init_from
                        AND e.corpus = f.corpus AND e.stat = 'all_tokens' AND e.feature = d.feature;
