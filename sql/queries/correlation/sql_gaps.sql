-- For implicit zeros: each feature's rank among the partners it is not known to beat, and the features
-- whose best never-co-firing partner lies beyond the $mask_bits tracked in the blocks' bitmasks.
CREATE TABLE corr_work.gaps_{{side}} AS SELECT * FROM corr_gaps('corr_work.stats_{{side}}', 'corr_work.partial_{{side}}');
CREATE OR REPLACE TABLE corr_work.saturated AS SELECT feature FROM corr_work.gaps_{{side}} WHERE gap_rank > $mask_bits;
SELECT count(*) FROM corr_work.saturated;
