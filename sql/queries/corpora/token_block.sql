-- The tokens of corpus $corpus with tok in [$lo, $hi), in tok order: one block of text to show or feed a model.
SELECT tok, token_id FROM tokens WHERE corpus = $corpus AND tok >= $lo AND tok < $hi ORDER BY tok;
