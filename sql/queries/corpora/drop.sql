-- A corpus's own rows; what was computed on it is dropped first by featstore.db.Corpora.drop.
DELETE FROM tokens WHERE corpus = $corpus;
DELETE FROM documents WHERE corpus = $corpus;
DELETE FROM corpora WHERE name = $corpus;
