-- A new corpus's documents, from the Arrow table registered as documents_batch (doc_id, n_tokens, origin).
INSERT INTO documents (corpus, doc_id, n_tokens, origin)
SELECT $corpus, doc_id, n_tokens, origin FROM documents_batch;
