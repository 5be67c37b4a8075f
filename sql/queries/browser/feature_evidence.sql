-- The best partner of feature $feature of SAE $sae under every match method besides correlation (weight
-- cosines, Jaccard, the crosscoder), per other SAE and corpus (NULL: data-free): the feature page.
WITH mine AS (
    SELECT m.method, m.corpus,
           CASE WHEN m.sae_a = $sae THEN m.sae_b ELSE m.sae_a END AS other_sae,
           CASE WHEN m.sae_a = $sae THEN p.feature_b ELSE p.feature_a END AS other_feature,
           p.score
    FROM match_runs m
    JOIN match_pairs p ON p.run_id = m.id
    WHERE (m.sae_a = $sae AND p.feature_a = $feature) OR (m.sae_b = $sae AND p.feature_b = $feature)
)
SELECT method, corpus, other_sae, other_feature, score
FROM mine
QUALIFY row_number() OVER (PARTITION BY method, corpus, other_sae ORDER BY score DESC, other_feature) = 1
ORDER BY method, other_sae, corpus NULLS FIRST;
