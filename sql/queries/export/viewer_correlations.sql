-- The best-correlated features of $sae's features, up to $k each (r descending), from one stored
-- all_tokens run (Pearson r over every token, SAEDashboard's statistic) with $sae on a side: a run of
-- $sae with itself first (SAEDashboard's meaning: features of the same SAE), then one on $corpus, then
-- the oldest. `other` names the SAE the matches are features of.
WITH chosen AS (
    SELECT id, sae_a, sae_b
    FROM correlation_runs
    WHERE stat = 'all_tokens' AND (sae_a = $sae OR sae_b = $sae)
    ORDER BY (sae_a = sae_b) DESC, (corpus = $corpus) DESC, id
    LIMIT 1
), pairs AS (
    SELECT c.feature_a AS feature, c.feature_b AS match, c.r, k.sae_b AS other
    FROM correlations c JOIN chosen k ON c.run_id = k.id
    WHERE k.sae_a = $sae
    UNION
    SELECT c.feature_b AS feature, c.feature_a AS match, c.r, k.sae_a AS other
    FROM correlations c JOIN chosen k ON c.run_id = k.id
    WHERE k.sae_b = $sae
)
SELECT feature::BIGINT AS feature, match::BIGINT AS match, r::DOUBLE AS r, other
FROM pairs
WHERE NOT (other = $sae AND feature = match)
QUALIFY row_number() OVER (PARTITION BY feature ORDER BY r DESC, match) <= $k
ORDER BY feature, r DESC, match
