-- Every corpus slice both $sae_a and $sae_b have partitions on, by name, and whether it holds a run of
-- ($sae_a, $sae_b, $stat) made with floor $r_floor and min_cofiring $min_cofiring after both partitions
-- were written: `featstore correlate A B` without --corpus computes the slices without one.
SELECT a.corpus, r.id IS NOT NULL AS stored
FROM activation_partitions a
JOIN activation_partitions b ON b.corpus = a.corpus AND b.sae = $sae_b
LEFT JOIN correlation_runs r
       ON r.sae_a = $sae_a AND r.sae_b = $sae_b AND r.corpus = a.corpus AND r.stat = $stat AND r.r_floor = $r_floor
      AND r.min_cofiring IS NOT DISTINCT FROM $min_cofiring AND r.created_at >= greatest(a.written_at, b.written_at)
WHERE a.sae = $sae_a
ORDER BY a.corpus;
