-- Every token occurrence with its decoded text, for rebuilding contexts:
-- SELECT string_agg(text, '' ORDER BY tok) FROM token_text WHERE corpus = 'c' AND doc_id = 0;
CREATE OR REPLACE VIEW token_text AS
SELECT t.tok, t.corpus, t.doc_id, t.pos, t.token_id, v.text
FROM tokens t
JOIN corpora c ON c.name = t.corpus
JOIN vocab v ON v.tokenizer = c.tokenizer AND v.token_id = t.token_id;
