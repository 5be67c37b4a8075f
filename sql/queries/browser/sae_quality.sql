-- One SAE's quality metrics and whether it meets the tiny preset's bar (view sae_quality).
SELECT * EXCLUDE (sae, model) FROM sae_quality WHERE sae = $sae
