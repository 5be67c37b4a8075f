-- Per feature of one side (all_tokens), the rank of its best never-co-firing partner: the lowest
-- rank of the other side it does not co-fire with, read off the co-firing bitmask of the mask_bits
-- lowest ranks as (number of trailing one bits) + 1. A value of mask_bits + 1 means every one of
-- those ranks co-fires and the gap lies further up: the SQL engine (featstore.correlation.engines.sql) then asks corr_gap_search.
CREATE OR REPLACE MACRO corr_gaps(stats_self, partials) AS TABLE
WITH masks AS (
    SELECT feature, bit_or(mask) AS mask FROM query_table(partials) GROUP BY feature
)
SELECT s.feature, bit_count(coalesce(m.mask, 0) & ~(coalesce(m.mask, 0) + 1)) + 1 AS gap_rank
FROM query_table(stats_self) s
LEFT JOIN masks m USING (feature);
