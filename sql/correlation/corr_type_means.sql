-- Rows a correlation joins on for token_type_mean, as the paper's code computes it: the mean
-- activation of each feature per token type (token_id), over the occurrences where it fires (DOUBLE:
-- a FLOAT mean would cost up to ~4e-5 in r).
CREATE OR REPLACE MACRO corr_type_means(sae_id, corpus_name) AS TABLE
SELECT t.token_id::UINTEGER AS key, a.feature, avg(a.act) AS x
FROM activations a
JOIN tokens t ON t.tok = a.tok AND t.corpus = corpus_name
WHERE a.sae = sae_id AND a.corpus = corpus_name
GROUP BY t.token_id, a.feature;
