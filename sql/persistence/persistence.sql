-- Per lineage edge, corpus and feature at a threshold given at query time: a parent feature
-- 'persists' when its match in the child scores >= threshold, else it 'disappears'; a child feature
-- 'persists' or 'emerges' the same way. A feature that never fires on the corpus is 'dead'. The
-- match comes from `method` (default: the correlation statistic `stat`; any match_methods name, e.g.
-- 'decoder_cosine') under `policy` ('best' match, as in the paper; 'mutual' best; 'one_to_one');
-- column r then holds that method's score. The features come from the correlation run of `stat`.
--   SELECT * FROM persistence(threshold := 0.7, stat := 'token_type_mean');
--   SELECT * FROM persistence(method := 'decoder_cosine', policy := 'one_to_one', threshold := 0.7);
CREATE OR REPLACE MACRO persistence(threshold := 0.8, stat := 'all_tokens', method := NULL, policy := 'best') AS TABLE
SELECT e.parent, e.child, e.relation, e.corpus, e.stat, e.run_id, e.side, e.sae, e.feature, e.match, e.r,
       CASE WHEN NOT e.fires THEN 'dead'
            WHEN e.r >= threshold THEN 'persists'
            WHEN e.side = 'parent' THEN 'disappears'
            ELSE 'emerges' END AS status
FROM method_matches(stat := stat, policy := policy) e
WHERE e.relation <> 'seed' AND e.method = match_method(coalesce(method, stat));
-- persistence at the paper's threshold 0.8 on the all_tokens statistic; persistence(...) for others.
CREATE OR REPLACE VIEW persistence AS SELECT * FROM persistence();
