SELECT parent, child, corpus, threshold, parent_share_persisting AS share_persist
FROM persistence_curve
WHERE stat = 'all_tokens'
ORDER BY corpus, parent, child, threshold;
