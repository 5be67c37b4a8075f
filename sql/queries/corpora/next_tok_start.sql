-- The first tok after every corpus ever stored: a new corpus starts there, so a tok id is never reused.
SELECT coalesce(max(tok_start + n_tokens), 0) FROM corpora;
