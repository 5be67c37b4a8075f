-- pair_matches under every match method stored for the pair and one policy: per compared pair,
-- corpus, method and feature, its match and score (column r), and whether it fires on the corpus
-- (from the correlation run of `stat`, which also gives the features). With the default policy
-- 'best' and method = stat the match is the run's own best match, as persistence always had it.
--   SELECT * FROM method_matches(policy := 'one_to_one') WHERE method = 'decoder_cosine';
CREATE OR REPLACE MACRO method_matches(stat := 'all_tokens', policy := 'best') AS TABLE
WITH available AS (
    SELECT DISTINCT least(s.sae_a, s.sae_b) AS lo, greatest(s.sae_a, s.sae_b) AS hi, s.corpus, s.method
    FROM match_sources s
    WHERE policy IN ('best', 'mutual', 'one_to_one')
       OR error('unknown match policy ''' || policy || ''' (use best, mutual or one_to_one)')
)
SELECT c.parent, c.child, c.relation, c.corpus, c.stat, c.run_id, c.side, c.sae, c.match_sae, c.feature,
       a.method, policy AS policy,
       CASE WHEN a.method = stat AND policy = 'best' THEN c.match ELSE p.match END AS match,
       CASE WHEN a.method = stat AND policy = 'best' THEN c.r ELSE p.score END AS r,
       c.r IS NOT NULL AS fires
FROM pair_matches c
JOIN available a ON a.lo = least(c.sae, c.match_sae) AND a.hi = greatest(c.sae, c.match_sae)
                AND coalesce(a.corpus, c.corpus) = c.corpus
-- equalities only (the run's own best needs no lookup: its method is NULLed out of the join), so
-- every DuckDB plans a hash join; an extra condition made the 1.5 shell loop over all pairs
LEFT JOIN policy_matches p ON p.policy = policy AND p.sae = c.sae AND p.match_sae = c.match_sae
                          AND p.method = CASE WHEN a.method = stat AND policy = 'best' THEN NULL ELSE a.method END
                          AND p.corpus IS NOT DISTINCT FROM a.corpus AND p.feature = c.feature
WHERE c.stat = stat;
