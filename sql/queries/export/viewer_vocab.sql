-- The text of every token id of tokenizer $tokenizer, for a feature viewer's token strings.
SELECT token_id, text FROM vocab WHERE tokenizer = $tokenizer;
