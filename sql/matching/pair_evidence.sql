-- match_evidence of one pair of SAEs seen from sae_x (feature_x in sae_x, feature_y in sae_y),
-- whichever orientation each run was stored in, on one corpus (data-free methods: corpus NULL).
CREATE OR REPLACE MACRO pair_evidence(sae_x, sae_y, corpus_name) AS TABLE
SELECT e.method, e.corpus,
       CASE WHEN e.sae_a = sae_x THEN e.feature_a ELSE e.feature_b END AS feature_x,
       CASE WHEN e.sae_a = sae_x THEN e.feature_b ELSE e.feature_a END AS feature_y,
       e.score
FROM match_evidence e
WHERE ((e.sae_a = sae_x AND e.sae_b = sae_y) OR (e.sae_a = sae_y AND e.sae_b = sae_x))
  AND e.corpus IS NOT DISTINCT FROM corpus_name;
