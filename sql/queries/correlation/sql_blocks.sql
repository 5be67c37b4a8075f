-- Side a's features cut into ranges of about $pairs_per_block co-firing row pairs, largest first, and the
-- table each range's pairs are summarised into (one row per feature of either side and per stored pair).
CREATE TABLE corr_work.found (kind VARCHAR, feature UINTEGER, match UINTEGER, r DOUBLE, mask UBIGINT, n BIGINT);
SELECT block, lo, hi, pairs FROM corr_blocks('corr_work.rows_a', 'corr_work.lists_b', $pairs_per_block) ORDER BY pairs DESC;
