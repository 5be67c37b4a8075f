-- Do the match methods agree on which features persist? Per compared pair (lineage edges and seed
-- pairs), corpus and pair of methods stored for it: the parent side's live features, how many each
-- method calls persisting at its match_methods.default_threshold, how many both do (and with the
-- same partner), and the Jaccard index of the two persisting sets. Beside the causal method, only the
-- features it checked count.
--   SELECT * FROM method_agreement(policy := 'one_to_one') WHERE method_a = 'all_tokens';
CREATE OR REPLACE MACRO method_agreement(policy := 'best', stat := 'all_tokens') AS TABLE
WITH verdicts AS (
    SELECT m.parent, m.child, m.relation, m.corpus, m.method, m.feature, m.match,
           coalesce(m.r >= t.default_threshold, false) AS persists
    FROM method_matches(stat := stat, policy := policy) m
    JOIN match_methods t ON t.name = m.method
    WHERE m.side = 'parent' AND m.fires
      AND (t.source <> 'causal' OR m.match IS NOT NULL)  -- the causal check reads the features it was run on only
)
SELECT a.parent, a.child, a.relation, a.corpus, a.method AS method_a, b.method AS method_b,
       count(*) AS live_features,
       count(*) FILTER (WHERE a.persists) AS persisting_a,
       count(*) FILTER (WHERE b.persists) AS persisting_b,
       count(*) FILTER (WHERE a.persists AND b.persists) AS persisting_both,
       count(*) FILTER (WHERE a.persists AND b.persists AND a.match = b.match) AS same_match,
       persisting_both / nullif(persisting_a + persisting_b - persisting_both, 0) AS agreement
FROM verdicts a
JOIN verdicts b ON b.parent = a.parent AND b.child = a.child AND b.corpus = a.corpus AND b.feature = a.feature
               AND a.method < b.method
GROUP BY a.parent, a.child, a.relation, a.corpus, a.method, b.method
ORDER BY a.parent, a.child, a.corpus, method_a, method_b;
