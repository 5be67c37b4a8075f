-- Every stored run of a match method between two SAEs: correlation runs (method = the statistic)
-- and match_runs (weight cosines, co-firing Jaccard; corpus NULL when data-free). When a pair was
-- run in both orientations, the newest run stands.
CREATE OR REPLACE VIEW match_sources AS
WITH runs AS (
    SELECT 'correlation' AS source, c.id AS run_id, c.sae_a, c.sae_b, c.corpus, c.stat AS method FROM correlation_runs c
    UNION ALL
    SELECT 'match', m.id, m.sae_a, m.sae_b, m.corpus, m.method FROM match_runs m
)
SELECT r.source, r.run_id, r.sae_a, r.sae_b, r.corpus, r.method
FROM runs r
QUALIFY row_number() OVER (PARTITION BY least(r.sae_a, r.sae_b), greatest(r.sae_a, r.sae_b), r.corpus, r.method
                           ORDER BY r.run_id DESC) = 1;
