-- Every feature of $parent_sae with its best match in $child_sae on $corpus by $stat, read from the
-- feature_matches view (either orientation of the run; the run with the parent as sae_a wins).
-- No row: no such run.
SELECT feature, match, r
FROM feature_matches
WHERE sae = $parent_sae AND match_sae = $child_sae AND corpus = $corpus AND stat = $stat
QUALIFY row_number() OVER (PARTITION BY feature ORDER BY side, run_id DESC) = 1
ORDER BY feature;
