-- Whether corpus $corpus has its tokens stored (a slice registered without text has none).
SELECT count(*) > 0 FROM tokens WHERE corpus = $corpus;
