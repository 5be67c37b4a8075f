-- The exact best-never-co-firing rank for the few features whose bitmask was saturated
-- (see corr_gaps): the lowest-ranked feature of the other side with no shared key. No row when the
-- feature co-fires with every feature of the other side.
CREATE OR REPLACE MACRO corr_gap_search(rows_self, rows_other, stats_other, saturated) AS TABLE
WITH partners AS (
    SELECT DISTINCT s.feature, o.feature AS partner
    FROM query_table(rows_self) s
    JOIN query_table(rows_other) o USING (key)
    WHERE s.feature IN (SELECT feature FROM query_table(saturated))
)
SELECT t.feature, min(st.rank) AS gap_rank
FROM query_table(saturated) t, query_table(stats_other) st
WHERE NOT EXISTS (SELECT 1 FROM partners p WHERE p.feature = t.feature AND p.partner = st.feature)
GROUP BY t.feature;
