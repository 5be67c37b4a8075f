-- Per lineage edge and evaluation slice: the share of the parent's live features that persist in
-- the child at r >= 0.8 (all_tokens), as `featstore run` prints it.
CREATE OR REPLACE VIEW run_persistence AS
SELECT parent, child, corpus, parent_persist, parent_disappear, child_emerge,
       round(parent_share_persisting, 4) AS share_persisting
FROM persistence_summary
ORDER BY parent, child, corpus;
