-- One corpus slice's token occurrences in tok order, with the decoded text of each token id.
SELECT t.doc_id, t.token_id
FROM tokens t
WHERE t.corpus = $corpus
ORDER BY t.tok
