-- Per feature of one side over all n_tokens occurrences, implicit zeros included: firing count n,
-- the centred norm ‖x − mean‖ = sqrt(Σx² − (Σx)²/N), and u = Σx / (‖x − mean‖·√N). With
-- v = x / ‖x − mean‖ the Pearson correlation of two features is a single sum over the tokens where
-- both fire:  r(a, b) = Σ v_a·v_b − u_a·u_b.  A pair that never co-fires has r = −u_a·u_b, so a
-- feature's best never-co-firing partner is the one of lowest u it does not co-fire with; rank
-- orders features by (u, feature) for that. Features constant over the corpus (no variance) have
-- an undefined r and no row.
CREATE OR REPLACE MACRO corr_feature_stats(rows_table, n_tokens) AS TABLE
WITH sums AS (
    SELECT feature, count(*) AS n, sum(x::DOUBLE) AS sx, sum(x::DOUBLE * x) AS sxx
    FROM query_table(rows_table)
    GROUP BY feature
), norms AS (
    SELECT feature, n, sx, sxx, sqrt(greatest(sxx - sx * sx / n_tokens, 0)) AS norm FROM sums
)
SELECT feature, n, norm, sx / (norm * sqrt(n_tokens)) AS u,
       (row_number() OVER (ORDER BY sx / (norm * sqrt(n_tokens)), feature))::UINTEGER AS rank
FROM norms
WHERE norm * norm > 1e-9 * sxx;
