-- A new corpus's token occurrences from tokens_batch (seq, doc_id, pos, token_id), numbered from its tok_start.
INSERT INTO tokens (tok, corpus, doc_id, pos, token_id)
SELECT ($tok_start + seq)::UINTEGER, $corpus, doc_id, pos, token_id
FROM tokens_batch
ORDER BY seq;
