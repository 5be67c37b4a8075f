-- The slices of SAEs $sae_a and $sae_b, each with the match methods that have a run there (either
-- orientation): the weights (corpus NULL, first; runs with top-k $top_k, and crosscoder runs) and every corpus slice both have
-- partitions on (runs made after both partitions were written). `featstore match A B` without --corpus
-- computes the slices lacking a method it was asked for.
WITH slices AS (
    SELECT NULL::VARCHAR AS corpus, NULL::TIMESTAMP AS written_at
    UNION ALL
    SELECT a.corpus, greatest(a.written_at, b.written_at)
    FROM activation_partitions a
    JOIN activation_partitions b ON b.corpus = a.corpus AND b.sae = $sae_b
    WHERE a.sae = $sae_a
)
SELECT s.corpus, coalesce(list(DISTINCT m.method ORDER BY m.method) FILTER (WHERE m.method IS NOT NULL), []) AS methods
FROM slices s
LEFT JOIN match_runs m
       ON least(m.sae_a, m.sae_b) = least($sae_a, $sae_b) AND greatest(m.sae_a, m.sae_b) = greatest($sae_a, $sae_b)
      AND m.corpus IS NOT DISTINCT FROM s.corpus
      AND CASE WHEN s.corpus IS NULL THEN m.top_k = $top_k OR m.method = 'crosscoder' ELSE m.created_at >= s.written_at END
GROUP BY s.corpus
ORDER BY s.corpus NULLS FIRST;
