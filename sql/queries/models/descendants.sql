-- Model $name and every model descending from it, as one list: a new parent among them would close a lineage cycle.
WITH RECURSIVE d(m) AS (SELECT $name::VARCHAR UNION SELECT l.child FROM lineage l JOIN d ON l.parent = d.m)
SELECT list(m) FROM d;
