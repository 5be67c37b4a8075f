-- Every model with its kind, training corpus and metrics, in creation order.
SELECT name, kind, train_corpus, architecture, metrics
FROM models
ORDER BY created_at, name
