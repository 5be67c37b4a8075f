-- Per lineage edge and evaluation slice: the share of the parent's live features that persist in
-- the child at r >= 0.8 (all_tokens), as `featstore run` prints it, beside the seed-noise floor of
-- the parent and of the child and the share relative to the parent's floor.
CREATE OR REPLACE VIEW run_persistence AS
SELECT parent, child, corpus, parent_persist, parent_disappear, child_emerge,
       round(parent_share_persisting, 4) AS share_persisting,
       round(parent_floor, 4) AS parent_floor,
       round(child_floor, 4) AS child_floor,
       round(parent_share_vs_floor, 3) AS share_vs_floor
FROM persistence_summary
ORDER BY parent, child, corpus;
