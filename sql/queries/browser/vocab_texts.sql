-- Decoded text of every token id of one tokenizer.
SELECT token_id, text FROM vocab WHERE tokenizer = $tokenizer ORDER BY token_id
