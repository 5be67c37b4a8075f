-- Every correlation run with both SAEs' sizes, so its best matches can be held as arrays per side.
SELECT r.id, r.sae_a, r.sae_b, r.corpus, r.stat, a.d_sae AS d_a, b.d_sae AS d_b
FROM correlation_runs r
JOIN saes a ON a.id = r.sae_a
JOIN saes b ON b.id = r.sae_b
ORDER BY r.id
