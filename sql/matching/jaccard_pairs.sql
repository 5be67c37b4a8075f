-- Co-firing Jaccard of every feature pair of two SAEs on a corpus (tokens where both fire over
-- tokens where either fires), keeping the pairs with J >= min_score plus each feature's best partner on
-- either side: the candidates of the 'jaccard' match method (featstore.matching). sae_y's features
-- are grouped into one list per token before the join, the scored pairs are materialised once, and
-- the best partners come from hash aggregates: 1.6 s CPU instead of 2.8 s for a flat join, three
-- inlined copies and window sorts (2,048 x 2,048 features, 20,000 tokens, ~22 active per token).
CREATE OR REPLACE MACRO jaccard_pairs(sae_x, sae_y, corpus_name, min_score) AS TABLE
WITH xs AS (
    SELECT tok, feature FROM activations WHERE sae = sae_x AND corpus = corpus_name
), ys AS (
    SELECT tok, feature FROM activations WHERE sae = sae_y AND corpus = corpus_name
), nx AS (
    SELECT feature, count(*) AS n FROM xs GROUP BY feature
), ny AS (
    SELECT feature, count(*) AS n FROM ys GROUP BY feature
), y_lists AS (
    SELECT tok, list(feature) AS features FROM ys GROUP BY tok
), both_fire AS (
    SELECT feature_a, feature_b, count(*) AS n
    FROM (SELECT xs.feature AS feature_a, unnest(l.features) AS feature_b FROM xs JOIN y_lists l USING (tok))
    GROUP BY ALL
), scored AS MATERIALIZED (
    SELECT b.feature_a, b.feature_b, (b.n / (nx.n + ny.n - b.n))::FLOAT AS score
    FROM both_fire b JOIN nx ON nx.feature = b.feature_a JOIN ny ON ny.feature = b.feature_b
)
SELECT * FROM scored WHERE score >= min_score
UNION  -- each feature's best partner (ties: the lowest feature id), by hash aggregates rather than sorts
SELECT feature_a, arg_max(feature_b, (score, -feature_b::BIGINT)), max(score) FROM scored GROUP BY feature_a
UNION
SELECT arg_max(feature_a, (score, -feature_a::BIGINT)), feature_b, max(score) FROM scored GROUP BY feature_b;
