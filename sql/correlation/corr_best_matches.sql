-- Every feature 0..n_features-1 of one side with its best match on the other: the better of its
-- best co-firing partner (partials, from corr_block_best) and, for all_tokens, its best
-- never-co-firing partner (r = −u_self·u_other at the gap rank of corr_gaps). Features with no
-- defined correlation (never fire) get NULL match and r.
CREATE OR REPLACE MACRO corr_best_matches(partials, stats_self, stats_other, gaps, n_features) AS TABLE
WITH cofiring AS (
    SELECT feature, arg_max(match, r) AS match, max(r) AS r FROM query_table(partials) GROUP BY feature
), quiet AS (
    SELECT g.feature, o.feature AS match, -s.u * o.u AS r
    FROM query_table(gaps) g
    JOIN query_table(stats_self) s USING (feature)
    JOIN query_table(stats_other) o ON o.rank = g.gap_rank
)
SELECT f.range::UINTEGER AS feature,
       CASE WHEN q.r IS NULL OR c.r >= q.r THEN c.match ELSE q.match END::UINTEGER AS match,
       greatest(c.r, q.r)::FLOAT AS r
FROM range(n_features) f
LEFT JOIN cofiring c ON c.feature = f.range
LEFT JOIN quiet q ON q.feature = f.range;
