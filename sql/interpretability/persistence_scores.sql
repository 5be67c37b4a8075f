-- Explanation scores of the features of every lineage edge, split by whether they persist across
-- the edge (persistence macro at the given threshold and statistic): on the parent side
-- persisting vs disappearing features, on the child side persisting vs emerging ones. Each feature's
-- score on its own explanation, one row per explainer and simulator; dead features are left out.
--   SELECT * FROM persistence_scores(threshold := 0.7);
CREATE OR REPLACE MACRO persistence_scores(threshold := 0.8, stat := 'all_tokens') AS TABLE
SELECT p.parent, p.child, p.corpus, p.side, p.sae, p.feature, p.status,
       p.status = 'persists' AS persisting, p.match, p.r,
       s.explainer, s.simulator, s.score
FROM persistence(threshold := threshold, stat := stat) p
JOIN scores s
  ON s.kind = 'self' AND s.sae = p.sae AND s.feature = p.feature AND s.corpus = p.corpus
WHERE p.status <> 'dead' AND s.score IS NOT NULL;
