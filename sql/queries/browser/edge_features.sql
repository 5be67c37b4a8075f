-- Every feature of both sides of one lineage edge on one corpus at a threshold, with its status
-- (persists / disappears / emerges / dead), best match and r: the browser's edge page.
SELECT side, sae, feature, match, r, status
FROM persistence(threshold := $threshold, stat := $stat)
WHERE parent = $parent AND child = $child AND corpus = $corpus
