-- Committed activation partitions with the size of their corpus slice.
SELECT p.sae, p.corpus, p.path, p.n_rows, p.n_tokens, c.tokenizer, c.tok_start
FROM activation_partitions p
JOIN corpora c ON c.name = p.corpus
ORDER BY p.sae, p.corpus
