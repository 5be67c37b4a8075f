SELECT name, n_documents, n_tokens, tok_start, tokenizer, source
FROM corpora
ORDER BY tok_start;
