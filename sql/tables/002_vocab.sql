-- Token strings of each tokenizer, so contexts can be rebuilt for display from token ids alone.
CREATE TABLE IF NOT EXISTS vocab (
    tokenizer VARCHAR NOT NULL,        -- tokenizers.fingerprint
    token_id  INTEGER NOT NULL,
    token     VARCHAR NOT NULL,        -- raw vocabulary entry (e.g. 'Ġthe', '▁the')
    text      VARCHAR NOT NULL,        -- the same token decoded to plain text (e.g. ' the')
    PRIMARY KEY (tokenizer, token_id)
);
