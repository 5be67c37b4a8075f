-- The token count of each document of corpus $corpus, in document order (the windows a reader cuts).
SELECT n_tokens FROM documents WHERE corpus = $corpus ORDER BY doc_id;
