-- Per lineage edge, corpus and method compared under at least two initialisations (view init_control): the
-- share persisting under each, beside the parent model's seed floor: the report's agreement section.
SELECT parent, child, corpus, method,
       round(any_value(share_persisting) FILTER (WHERE init = 'independent'), 3) AS independent,
       round(any_value(share_persisting) FILTER (WHERE init = 'shared'), 3) AS shared,
       round(any_value(share_persisting) FILTER (WHERE init = 'lineage'), 3) AS lineage,
       round(any_value(floor_share), 3) AS seed_floor
FROM init_control
GROUP BY parent, child, corpus, method
HAVING count(DISTINCT init) >= 2
ORDER BY parent, child, corpus, method;
