-- Side b's rows grouped into one row per key (lists of features and values), so each block's
-- join probes ~N list rows instead of every activation and unnests only the keys it matches:
-- measured ~25% less CPU per co-firing pair than joining the flat rows. n is the list length, kept
-- apart because reading a list column to take its length reads the whole list.
CREATE OR REPLACE MACRO corr_key_lists(rows_table) AS TABLE
SELECT key, list(feature) AS features, list(x) AS xs, count(*) AS n
FROM query_table(rows_table)
GROUP BY key;
