-- all_tokens: features whose lowest-u partners all co-fire past the bitmask (corr_work.saturated)
-- get their gap rank from the exact search over the rows.
UPDATE corr_work.gaps_{{side}} g
SET gap_rank = s.gap_rank
FROM (
    SELECT t.feature, f.gap_rank
    FROM corr_work.saturated t
    LEFT JOIN corr_gap_search('corr_work.rows_{{side}}', 'corr_work.rows_{{other}}', 'corr_work.stats_{{other}}',
                              'corr_work.saturated') f USING (feature)
) s
WHERE g.feature = s.feature;
