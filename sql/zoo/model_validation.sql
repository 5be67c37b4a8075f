-- One row per (model, evaluation domain): the validation loss and next-token accuracy that training,
-- fine-tuning or merging recorded in models.metrics.
CREATE OR REPLACE VIEW model_validation AS
SELECT m.name AS model,
       m.kind,
       d.domain,
       CAST(m.metrics -> 'val_loss' ->> d.domain AS DOUBLE) AS val_loss,
       CAST(m.metrics -> 'val_accuracy' ->> d.domain AS DOUBLE) AS val_accuracy
FROM models AS m, unnest(json_keys(m.metrics, '$.val_loss')) AS d(domain)
ORDER BY m.created_at, m.name, d.domain;
