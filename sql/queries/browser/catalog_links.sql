-- Persisting links parent feature -> its best child match (threshold 0.8, all_tokens), per corpus:
-- the edges of feature families (sql/209), read once so a page walks a family in memory.
SELECT parent, child, corpus, p.sae AS parent_sae, feature AS parent_feature, match AS child_feature, r
FROM persistence() p
WHERE side = 'parent' AND status = 'persists'
