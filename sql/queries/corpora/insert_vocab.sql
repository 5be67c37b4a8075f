-- A tokenizer's vocabulary from vocab_batch (token_id, token, text).
INSERT INTO vocab (tokenizer, token_id, token, text)
SELECT $tokenizer, token_id, token, text FROM vocab_batch;
