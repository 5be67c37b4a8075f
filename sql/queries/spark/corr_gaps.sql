-- all_tokens, per feature of one side with a defined r: the rank of its best never-co-firing partner,
-- the lowest rank of the other side it does not co-fire with (Spark SQL; what sql/228-229 find from
-- bitmasks): the first place where its partners' ranks, sorted, skip a number. A rank beyond the
-- other side's last means it co-fires with all (no such partner). Views: side_pairs (feature, partner,
-- r, partner_rank), stats_self.
WITH numbered AS (
    SELECT feature, partner_rank, row_number() OVER (PARTITION BY feature ORDER BY partner_rank) AS rn
    FROM side_pairs
), gaps AS (
    SELECT feature, coalesce(min(CASE WHEN partner_rank > rn THEN rn END), max(rn) + 1) AS gap_rank
    FROM numbered
    GROUP BY feature
)
SELECT s.feature, coalesce(g.gap_rank, 1) AS gap_rank
FROM stats_self s
LEFT JOIN gaps g ON g.feature = s.feature
