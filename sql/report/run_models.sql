-- The models of a run with their validation metrics per domain (as featstore.models.lm records them).
CREATE OR REPLACE VIEW run_models AS
SELECT name, kind, train_corpus,
       metrics->'val_loss' AS val_loss,
       metrics->'val_accuracy' AS val_accuracy
FROM models
ORDER BY created_at, name;
