-- Histogram of explanation scores per model, in bins of 0.1 from -1 to 1 (bin_start -1.0 .. 0.9;
-- a score of exactly 1 falls in the last bin). One row per non-empty bin, ready to plot.
CREATE OR REPLACE VIEW score_distribution AS
SELECT k.model, s.sae, s.corpus, s.kind, s.explainer, s.simulator,
       least(floor(s.score * 10), 9) / 10 AS bin_start,
       count(*) AS features
FROM scores s
LEFT JOIN saes k ON k.id = s.sae
WHERE s.score IS NOT NULL
GROUP BY ALL
ORDER BY k.model, s.sae, s.corpus, s.kind, s.explainer, s.simulator, bin_start;
