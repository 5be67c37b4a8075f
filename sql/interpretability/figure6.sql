-- The paper's Figure 6 per lineage edge at threshold 0.8 (all_tokens): for each side, the score
-- distribution of the persisting features beside that of the others (disappearing on the parent
-- side, emerging on the child side). `scores` holds each group's sorted scores, ready for a
-- histogram; persistence_scores(threshold := …) gives the rows at another threshold.
CREATE OR REPLACE VIEW figure6 AS
SELECT parent, child, corpus, side, persisting, explainer, simulator,
       count(*) AS features,
       avg(score) AS mean_score,
       median(score) AS median_score,
       list(score ORDER BY score) AS scores
FROM persistence_scores()
GROUP BY ALL
ORDER BY parent, child, corpus, side DESC, persisting DESC, explainer, simulator;
