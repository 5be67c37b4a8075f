-- Every SAE's evaluation metrics (recorded by `featstore sae train` / `featstore sae eval`) with a
-- check against the quality bar of the tiny preset: FVU <= 0.2, CE loss recovered >= 0.8, dead
-- fraction <= 10 %, mean L0 <= 5 % of the dictionary. Crosscoders are in crosscoder_summary.
CREATE OR REPLACE VIEW sae_quality AS
WITH m AS (
    SELECT id AS sae, model, is_primary, architecture, d_in, d_sae, seed, train_tokens,
           (metrics->>'mse')::DOUBLE AS mse,
           (metrics->>'fvu')::DOUBLE AS fvu,
           (metrics->>'l0')::DOUBLE AS l0,
           (metrics->>'dead_fraction')::DOUBLE AS dead_fraction,
           (metrics->>'ce_loss_recovered')::DOUBLE AS ce_loss_recovered,
           (metrics->>'eval_tokens')::BIGINT AS eval_tokens
    FROM saes
    WHERE architecture <> 'crosscoder'  -- a crosscoder's quality is per model: crosscoder_summary
)
SELECT *,
       fvu <= 0.2 AND ce_loss_recovered >= 0.8 AND dead_fraction <= 0.1 AND l0 <= 0.05 * d_sae AS meets_bar
FROM m
ORDER BY model, sae;
