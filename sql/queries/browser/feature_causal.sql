-- The causal checks of feature $feature of SAE $sae (causal_checks), seen from this feature: the other SAE
-- and feature, the corpus, the pair's causal score and each side's own effect, for its feature page.
SELECT CASE WHEN sae_a = $sae THEN sae_b ELSE sae_a END AS other_sae,
       CASE WHEN sae_a = $sae THEN feature_b ELSE feature_a END AS other_feature,
       corpus, match_method, match_score, tokens, effect_cosine, agrees,
       CASE WHEN sae_a = $sae THEN loss_change_a ELSE loss_change_b END AS loss_change,
       CASE WHEN sae_a = $sae THEN loss_change_b ELSE loss_change_a END AS other_loss_change,
       CASE WHEN sae_a = $sae THEN kl_a ELSE kl_b END AS kl,
       CASE WHEN sae_a = $sae THEN kl_b ELSE kl_a END AS other_kl
FROM causal_checks
WHERE (sae_a = $sae AND feature_a = $feature) OR (sae_b = $sae AND feature_b = $feature)
ORDER BY other_sae, corpus;
