-- Per lineage edge and corpus: how many parent features persist or disappear and how many child
-- features persist or emerge, with the share persisting among features that fire with a defined r;
-- dead features (never fire) and constant ones (fire with one value, so no r) are counted apart, so
-- the four counts of a side add up to every feature of its SAE. These are the numbers of the paper's Figure 2. Beside them the seed-noise floor
-- of the parent and of the child (seed_floors: the share of a model's primary SAE's live features
-- persisting into an SAE differing only in its seed, averaged over its replicas, measured on the
-- same corpus when there, else on the corpus it was measured on) and each share relative to its floor.
-- (Columns are qualified because a macro parameter shadows a column of the same name.)
CREATE OR REPLACE MACRO persistence_summary(threshold := 0.8, stat := 'all_tokens', method := NULL, policy := 'best') AS TABLE
WITH counts AS (
    SELECT p.parent, p.child, p.relation, p.corpus, p.stat, any_value(threshold)::DOUBLE AS threshold,
           count(*) FILTER (WHERE side = 'parent' AND status = 'persists') AS parent_persist,
           count(*) FILTER (WHERE side = 'parent' AND status = 'disappears') AS parent_disappear,
           count(*) FILTER (WHERE side = 'parent' AND status = 'dead') AS parent_dead,
           count(*) FILTER (WHERE side = 'parent' AND status = 'constant') AS parent_constant,
           count(*) FILTER (WHERE side = 'child' AND status = 'persists') AS child_persist,
           count(*) FILTER (WHERE side = 'child' AND status = 'emerges') AS child_emerge,
           count(*) FILTER (WHERE side = 'child' AND status = 'dead') AS child_dead,
           count(*) FILTER (WHERE side = 'child' AND status = 'constant') AS child_constant,
           parent_persist / nullif(parent_persist + parent_disappear, 0) AS parent_share_persisting,
           child_persist / nullif(child_persist + child_emerge, 0) AS child_share_persisting
    FROM persistence(threshold := threshold, stat := stat, method := method, policy := policy) p
    GROUP BY p.parent, p.child, p.relation, p.corpus, p.stat
), floors AS (
    SELECT f.model, f.corpus, avg(f.primary_share_persisting) AS floor
    FROM seed_floors(thresholds := [threshold], stat := stat, method := method, policy := policy) f
    GROUP BY f.model, f.corpus
), endpoint_floors AS (
    SELECT c.parent, c.child, c.corpus, f.model, f.floor
    FROM counts c JOIN floors f ON f.model IN (c.parent, c.child)
    QUALIFY row_number() OVER (PARTITION BY c.parent, c.child, c.corpus, f.model ORDER BY f.corpus = c.corpus DESC, f.corpus) = 1
)
SELECT c.*, pf.floor AS parent_floor, cf.floor AS child_floor,
       c.parent_share_persisting / nullif(pf.floor, 0) AS parent_share_vs_floor,
       c.child_share_persisting / nullif(cf.floor, 0) AS child_share_vs_floor
FROM counts c
LEFT JOIN endpoint_floors pf ON pf.parent = c.parent AND pf.child = c.child AND pf.corpus = c.corpus AND pf.model = c.parent
LEFT JOIN endpoint_floors cf ON cf.parent = c.parent AND cf.child = c.child AND cf.corpus = c.corpus AND cf.model = c.child
ORDER BY c.parent, c.child, c.corpus;
-- persistence_summary at threshold 0.8 on all_tokens; persistence_summary(...) for others.
CREATE OR REPLACE VIEW persistence_summary AS SELECT * FROM persistence_summary();
