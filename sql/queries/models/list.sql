SELECT m.name, m.kind, m.architecture, m.tokenizer, m.train_corpus,
       (SELECT string_agg(parent, ',' ORDER BY parent_order) FROM lineage l WHERE l.child = m.name) AS parents,
       m.metrics, m.path
FROM models m
ORDER BY m.created_at, m.name;
