-- The crosscoder of parent $parent and child $child at hook $hook that gives their evidence, if any: the
-- newest BatchTopK one, else the newest L1 one (L1 crosscoders invent exclusive latents; they are kept to compare).
SELECT x.sae FROM crosscoders x JOIN saes s ON s.id = x.sae
WHERE x.parent_model = $parent AND x.child_model = $child AND s.hook_point = $hook
ORDER BY x.sparsity = 'batchtopk' DESC, s.created_at DESC, x.sae DESC
LIMIT 1;
