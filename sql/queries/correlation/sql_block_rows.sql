-- One worker's block of side-a rows, features $lo to $hi, in a table of its own: with its true size
-- known, DuckDB builds the join's hash table on the block rather than on side b.
CREATE OR REPLACE TABLE corr_work.block_a_{{worker}} AS SELECT * FROM corr_work.rows_a WHERE feature BETWEEN $lo AND $hi;
