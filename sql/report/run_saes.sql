-- The primary SAE of each model with the evaluation metrics the trainer recorded.
CREATE OR REPLACE VIEW run_saes AS
SELECT id AS sae, model, d_in, d_sae, architecture, train_tokens,
       round((metrics->>'fvu')::DOUBLE, 4) AS fvu,
       round((metrics->>'l0')::DOUBLE, 2) AS l0,
       round((metrics->>'l0_fraction')::DOUBLE, 4) AS l0_fraction,
       round((metrics->>'dead_fraction')::DOUBLE, 4) AS dead_fraction,
       round((metrics->>'ce_loss_recovered')::DOUBLE, 4) AS ce_loss_recovered
FROM saes
WHERE is_primary
ORDER BY created_at, id;
