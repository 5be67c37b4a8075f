-- Rows a correlation joins on, keyed by token occurrence (statistics all_tokens and cofiring).
-- Used by the SQL engine (featstore.correlation.engines.sql); key is the join column, x the activation.
CREATE OR REPLACE MACRO corr_occurrences(sae_id, corpus_name) AS TABLE
SELECT tok AS key, feature, act AS x
FROM activations
WHERE sae = sae_id AND corpus = corpus_name;
