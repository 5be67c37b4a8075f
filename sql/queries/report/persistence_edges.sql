-- Figure 2's arrows: every lineage edge correlated on a slice (view persistence_summary), grouped by slice.
SELECT * FROM persistence_summary ORDER BY corpus, parent, child;
