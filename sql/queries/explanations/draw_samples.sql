-- Draw and store the examples of $features (macro feature_samples, seeded).
INSERT INTO explanation_samples (sae, corpus, seed, feature, tok, kind, rank, act, bin, doc_id, pos, before, token, after)
SELECT $sae, $corpus, $seed, feature, tok, kind, rank, act, bin, doc_id, pos, before, token, after
FROM feature_samples($sae, $corpus, features := $features, seed := $seed);
