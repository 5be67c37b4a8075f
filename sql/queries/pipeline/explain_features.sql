-- The features explain-<model> explains on its home slice, so Figure 6 has data on every edge: the
-- `top` most frequent, every feature that persists across an edge of the model (either side,
-- r >= 0.8, all_tokens), and per edge and side a seeded random sample of `sample` of the others
-- that fire there (disappearing or emerging).
WITH statuses AS (
    SELECT parent, child, side, feature, status
    FROM persistence()
    WHERE sae = $sae AND corpus = $corpus AND status <> 'dead'
), frequent AS (
    SELECT feature FROM activations WHERE sae = $sae AND corpus = $corpus
    GROUP BY feature ORDER BY count(*) DESC, feature LIMIT $top
), others AS (
    SELECT feature FROM statuses WHERE status <> 'persists'
    QUALIFY row_number() OVER (PARTITION BY parent, child, side ORDER BY hash($seed, feature), feature) <= $sample
)
SELECT DISTINCT feature FROM (
    SELECT feature FROM frequent
    UNION ALL SELECT feature FROM statuses WHERE status = 'persists'
    UNION ALL SELECT feature FROM others
)
ORDER BY feature
