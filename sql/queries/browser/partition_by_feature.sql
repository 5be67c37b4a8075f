-- A partition file's rows ($path) by feature, strongest activation first: a feature's activations are one
-- contiguous slice of the browser's in-memory index.
SELECT feature, tok, act FROM read_parquet($path) ORDER BY feature, act DESC, tok;
