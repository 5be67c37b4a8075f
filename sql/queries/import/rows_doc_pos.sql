-- An imported file (view import_file) with columns doc_id, pos, feature, act, mapped to tok through the
-- corpus's documents (table docs: doc_id, start, n_tokens); known: the (doc_id, pos) exists.
CREATE TEMP VIEW import_rows AS
SELECT d.start + f.pos AS tok, f.feature::BIGINT AS feature, f.act::DOUBLE AS act,
       f.doc_id IS NULL OR f.pos IS NULL OR f.feature IS NULL OR f.act IS NULL AS has_null,
       d.doc_id IS NOT NULL AND f.pos >= 0 AND f.pos < d.n_tokens AS known
FROM import_file f
LEFT JOIN docs d ON d.doc_id = f.doc_id;
