-- Co-firing Jaccard of every feature pair of two SAEs on a corpus (tokens where both fire over
-- tokens where either fires), keeping the pairs with J >= min_score plus each feature's best partner on
-- either side: the candidates of the 'jaccard' match method (featstore.matching).
CREATE OR REPLACE MACRO jaccard_pairs(sae_x, sae_y, corpus_name, min_score) AS TABLE
WITH xs AS (
    SELECT tok, feature FROM activations WHERE sae = sae_x AND corpus = corpus_name
), ys AS (
    SELECT tok, feature FROM activations WHERE sae = sae_y AND corpus = corpus_name
), nx AS (
    SELECT feature, count(*) AS n FROM xs GROUP BY feature
), ny AS (
    SELECT feature, count(*) AS n FROM ys GROUP BY feature
), both_fire AS (
    SELECT xs.feature AS feature_a, ys.feature AS feature_b, count(*) AS n FROM xs JOIN ys USING (tok) GROUP BY ALL
), scored AS (
    SELECT b.feature_a, b.feature_b, (b.n / (nx.n + ny.n - b.n))::FLOAT AS score
    FROM both_fire b JOIN nx ON nx.feature = b.feature_a JOIN ny ON ny.feature = b.feature_b
)
SELECT * FROM scored WHERE score >= min_score
UNION
(SELECT * FROM scored QUALIFY row_number() OVER (PARTITION BY feature_a ORDER BY score DESC, feature_b) = 1)
UNION
(SELECT * FROM scored QUALIFY row_number() OVER (PARTITION BY feature_b ORDER BY score DESC, feature_a) = 1);
