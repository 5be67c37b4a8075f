-- all_tokens, per feature of one side with a defined r: the rank of its best never-co-firing partner,
-- the lowest rank of the other side it does not co-fire with (Spark SQL; what sql/228-229 find from
-- bitmasks): the first place where its partners' ranks, sorted, skip a number; a rank beyond the other
-- side's last means it co-fires with all (no such partner). Only partners of rank <= :low_ranks are
-- sorted, except for the few features that co-fire with all of those. Views: side_pairs (feature,
-- partner, r, partner_rank), stats_self.
WITH low AS (
    SELECT feature, partner_rank FROM side_pairs WHERE partner_rank <= :low_ranks
), saturated AS (
    SELECT feature FROM low GROUP BY feature HAVING count(*) = :low_ranks
), candidates AS (
    SELECT l.feature, l.partner_rank FROM low l LEFT ANTI JOIN saturated s ON s.feature = l.feature
    UNION ALL
    SELECT p.feature, p.partner_rank FROM side_pairs p LEFT SEMI JOIN saturated s ON s.feature = p.feature
), numbered AS (
    SELECT feature, partner_rank, row_number() OVER (PARTITION BY feature ORDER BY partner_rank) AS rn
    FROM candidates
), gaps AS (
    SELECT feature, coalesce(min(CASE WHEN partner_rank > rn THEN rn END), max(rn) + 1) AS gap_rank
    FROM numbered
    GROUP BY feature
)
SELECT s.feature, coalesce(g.gap_rank, 1) AS gap_rank
FROM stats_self s
LEFT JOIN gaps g ON g.feature = s.feature
