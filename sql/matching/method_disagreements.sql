-- The parent features on which two match methods disagree most: one calls it persisting, the other
-- not, ranked by how far apart the two scores fall from their thresholds (match_methods
-- .default_threshold), with the feature's top tokens on the corpus. n per edge, corpus and method pair.
--   SELECT * FROM method_disagreements(n := 3) WHERE method_a = 'all_tokens';
CREATE OR REPLACE MACRO method_disagreements(n := 5, policy := 'best', stat := 'all_tokens') AS TABLE
WITH verdicts AS (
    SELECT m.parent, m.child, m.relation, m.corpus, m.sae, m.method, m.feature, m.match, m.r AS score,
           coalesce(m.r, 0) - t.default_threshold AS margin
    FROM method_matches(stat := stat, policy := policy) m
    JOIN match_methods t ON t.name = m.method
    WHERE m.side = 'parent' AND m.fires
      AND (t.source <> 'causal' OR m.match IS NOT NULL)  -- the causal check reads the features it was run on only
), disagreements AS (
    SELECT a.parent, a.child, a.relation, a.corpus, a.sae, a.feature, a.method AS method_a, b.method AS method_b,
           a.match AS match_a, a.score AS score_a, b.match AS match_b, b.score AS score_b,
           abs(a.margin - b.margin) AS gap,
           row_number() OVER (PARTITION BY a.parent, a.child, a.corpus, a.method, b.method ORDER BY gap DESC, a.feature) AS rank
    FROM verdicts a
    JOIN verdicts b ON b.parent = a.parent AND b.child = a.child AND b.corpus = a.corpus AND b.feature = a.feature
                   AND a.method < b.method
    WHERE (a.margin >= 0) <> (b.margin >= 0)
    QUALIFY rank <= n
), top_acts AS (
    SELECT x.sae, x.corpus, x.feature, x.tok, x.act
    -- joined on the partition keys with the features as a list, so DuckDB 1.5 (the shell) reads only
    -- those partitions too; a semi join on all three keys made it scan and hash every activation
    FROM activations x
    JOIN (SELECT sae, corpus, list(DISTINCT feature) AS features FROM disagreements GROUP BY ALL) d
      ON d.sae = x.sae AND d.corpus = x.corpus
    WHERE list_contains(d.features, x.feature)
    QUALIFY row_number() OVER (PARTITION BY x.sae, x.corpus, x.feature ORDER BY x.act DESC, x.tok) <= 3
), top_tokens AS (
    SELECT a.sae, a.corpus, a.feature, string_agg(t.text, ' | ' ORDER BY a.act DESC, a.tok) AS top_tokens
    FROM top_acts a JOIN token_text t ON t.tok = a.tok
    GROUP BY ALL
)
SELECT d.parent, d.child, d.relation, d.corpus, d.method_a, d.method_b, d.rank, d.feature,
       d.match_a, round(d.score_a, 3) AS score_a, d.match_b, round(d.score_b, 3) AS score_b, t.top_tokens
FROM disagreements d
LEFT JOIN top_tokens t ON t.sae = d.sae AND t.corpus = d.corpus AND t.feature = d.feature
ORDER BY d.parent, d.child, d.corpus, d.method_a, d.method_b, d.rank;
