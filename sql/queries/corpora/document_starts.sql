-- (doc_id, first tok, n_tokens) of every document of a corpus: maps (doc_id, pos) to tok.
SELECT d.doc_id,
       c.tok_start + coalesce(sum(d.n_tokens) OVER (ORDER BY d.doc_id
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS start,
       d.n_tokens
FROM documents d
JOIN corpora c ON c.name = d.corpus
WHERE d.corpus = $corpus;
