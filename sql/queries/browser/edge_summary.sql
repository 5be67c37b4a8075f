-- Figure 2's numbers per edge and corpus (persistence_summary at its defaults).
SELECT * FROM persistence_summary ORDER BY corpus, parent, child
