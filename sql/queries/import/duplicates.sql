-- (tok, feature) keys given more than once (after the checks every row's (doc_id, pos) maps to its own tok).
SELECT count(*)
FROM (SELECT tok, feature FROM import_rows WHERE act > 0 GROUP BY tok, feature HAVING count(*) > 1);
