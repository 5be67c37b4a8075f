-- Per lineage edge, corpus and feature at a threshold given at query time: a parent feature
-- 'persists' when its match in the child scores >= threshold, else it 'disappears'; a child feature
-- 'persists' or 'emerges' the same way. A feature that never fires on the corpus is 'dead'; one that fires but
-- has no defined r (the same value on every token it fires on) is 'constant'. A threshold outside
-- [-1, 1] is an error. The
-- match comes from `method` (default: the correlation statistic `stat`; any match_methods name, e.g.
-- 'decoder_cosine') under `policy` ('best' match, as in the paper; 'mutual' best; 'one_to_one');
-- column r then holds that method's score. The features come from the correlation run of `stat`.
--   SELECT * FROM persistence(threshold := 0.7, stat := 'token_type_mean');
--   SELECT * FROM persistence(method := 'decoder_cosine', policy := 'one_to_one', threshold := 0.7);
CREATE OR REPLACE MACRO persistence(threshold := 0.8, stat := 'all_tokens', method := NULL, policy := 'best') AS TABLE
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, e.run_id, e.side, e.sae, e.feature, e.match, e.r,
       CASE WHEN NOT e.fires_at_all THEN 'dead'
            WHEN NOT e.fires THEN 'constant'
            -- checked here too: a filter on status is rewritten into r >= threshold and pushed down
            WHEN e.r >= CASE WHEN threshold BETWEEN -1 AND 1 THEN threshold
                             ELSE error('persistence: threshold must be a correlation between -1 and 1, got ' || threshold) END
            THEN 'persists'
            WHEN e.side = 'parent' THEN 'disappears'
            ELSE 'emerges' END AS status
FROM (SELECT *, fires OR EXISTS (SELECT 1 FROM activations a WHERE a.sae = m.sae AND a.corpus = m.corpus
                                               AND a.feature = m.feature) AS fires_at_all
      FROM method_matches(stat := stat, policy := policy) m) e
WHERE e.relation <> 'seed' AND e.method = match_method(coalesce(method, stat))
  AND CASE WHEN threshold BETWEEN -1 AND 1 THEN true
           ELSE error('persistence: threshold must be a correlation between -1 and 1, got ' || threshold) END;
-- persistence at the paper's threshold 0.8 on the all_tokens statistic; persistence(...) for others.
CREATE OR REPLACE VIEW persistence AS SELECT * FROM persistence();
