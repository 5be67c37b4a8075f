-- Every feature 0..n-1 of one side with its best match on the other (Spark SQL), as
-- sql/230_corr_best_matches.sql: the better of its best co-firing partner (ties: the lower partner id)
-- and, for all_tokens, its best never-co-firing one (r = −u_self·u_other at the gap rank); NULL when
-- no correlation is defined. Views: features (id), side_pairs (feature, partner, r, partner_rank),
-- gaps (feature, gap_rank; empty unless all_tokens), stats_self, stats_other.
WITH cofiring AS (
    SELECT feature, max_by(partner, named_struct('r', r, 'lower', -partner)) AS match, max(r) AS r
    FROM side_pairs
    GROUP BY feature
), quiet AS (
    SELECT g.feature, o.feature AS match, -s.u * o.u AS r
    FROM gaps g
    JOIN stats_self s ON s.feature = g.feature
    JOIN stats_other o ON o.rank = g.gap_rank
)
SELECT f.id AS feature,
       CASE WHEN q.r IS NULL OR c.r >= q.r THEN c.match ELSE q.match END AS match,
       CAST(greatest(c.r, q.r) AS FLOAT) AS r
FROM features f
LEFT JOIN cofiring c ON c.feature = f.id
LEFT JOIN quiet q ON q.feature = f.id
