-- Figure 6, parent side: per edge and corpus the scores of persisting and of disappearing features.
SELECT parent, child, corpus, persisting, scores
FROM figure6
WHERE side = 'parent'
ORDER BY parent, child, corpus, persisting, explainer, simulator;
