-- Per crosscoder: its two models, its sparsity, its latents per class (by relative decoder norm), the
-- exclusive latents Latent Scaling flags as likely artefacts, and its quality per model on held-out text.
--   SELECT * FROM crosscoder_summary WHERE child_model = 'lua';
CREATE OR REPLACE VIEW crosscoder_summary AS
SELECT x.sae AS crosscoder, x.parent_model, x.child_model, x.sparsity, s.d_sae,
       count(*) FILTER (WHERE l.class = 'shared') AS shared,
       count(*) FILTER (WHERE l.class = 'parent_only') AS parent_only,
       count(*) FILTER (WHERE l.class = 'child_only') AS child_only,
       count(*) FILTER (WHERE l.class = 'intermediate') AS intermediate,
       count(*) FILTER (WHERE l.class = 'dead') AS dead,
       count(*) FILTER (WHERE l.artefact) AS artefacts,
       round((any_value(s.metrics)->>'fvu_parent')::DOUBLE, 4) AS fvu_parent,
       round((any_value(s.metrics)->>'fvu_child')::DOUBLE, 4) AS fvu_child,
       round((any_value(s.metrics)->>'l0')::DOUBLE, 2) AS l0
FROM crosscoders x
JOIN saes s ON s.id = x.sae
LEFT JOIN crosscoder_latents l ON l.sae = x.sae
GROUP BY x.sae, x.parent_model, x.child_model, x.sparsity, s.d_sae
ORDER BY x.parent_model, x.child_model, x.sae;
