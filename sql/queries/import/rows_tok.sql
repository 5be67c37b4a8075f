-- An imported file (view import_file) with columns tok, feature, act: as rows keyed by tok.
CREATE TEMP VIEW import_rows AS
SELECT tok::BIGINT AS tok, feature::BIGINT AS feature, act::DOUBLE AS act,
       tok IS NULL OR feature IS NULL OR act IS NULL AS has_null,
       NULL::BOOLEAN AS known
FROM import_file;
