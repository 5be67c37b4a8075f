-- Per merged model and slice, its features matching no parent (view merge_inheritance): a merge's emerged count in Figure 2.
SELECT child, corpus, count(*) AS n FROM merge_inheritance WHERE inheritance = 'emerged' GROUP BY ALL;
