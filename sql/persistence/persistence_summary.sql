-- Per lineage edge and corpus: how many parent features persist or disappear and how many child
-- features persist or emerge, with the share persisting among features that fire (dead ones are
-- counted apart). These are the numbers of the paper's Figure 2. (Columns are qualified because a
-- macro parameter shadows a column of the same name.)
CREATE OR REPLACE MACRO persistence_summary(threshold := 0.8, stat := 'all_tokens') AS TABLE
SELECT p.parent, p.child, p.relation, p.corpus, p.stat, any_value(threshold)::DOUBLE AS threshold,
       count(*) FILTER (WHERE side = 'parent' AND status = 'persists') AS parent_persist,
       count(*) FILTER (WHERE side = 'parent' AND status = 'disappears') AS parent_disappear,
       count(*) FILTER (WHERE side = 'parent' AND status = 'dead') AS parent_dead,
       count(*) FILTER (WHERE side = 'child' AND status = 'persists') AS child_persist,
       count(*) FILTER (WHERE side = 'child' AND status = 'emerges') AS child_emerge,
       count(*) FILTER (WHERE side = 'child' AND status = 'dead') AS child_dead,
       parent_persist / nullif(parent_persist + parent_disappear, 0) AS parent_share_persisting,
       child_persist / nullif(child_persist + child_emerge, 0) AS child_share_persisting
FROM persistence(threshold := threshold, stat := stat) p
GROUP BY p.parent, p.child, p.relation, p.corpus, p.stat
ORDER BY p.parent, p.child, p.corpus;
-- persistence_summary at threshold 0.8 on all_tokens; persistence_summary(...) for others.
CREATE OR REPLACE VIEW persistence_summary AS SELECT * FROM persistence_summary();
