-- Explanation scores per model and SAE: how interpretable its features are, per explainer and
-- simulator. kind 'self' is each feature's own explanation; 'shuffled' the baseline where each
-- feature gets another feature's explanation; 'transfer' a matched parent feature's explanation.
CREATE OR REPLACE VIEW score_summary AS
SELECT k.model, s.sae, s.corpus, s.kind, s.explainer, s.simulator,
       count(*) AS features,
       count(s.score) AS scored,
       avg(s.score) AS mean_score,
       quantile_cont(s.score, 0.25) AS q25,
       median(s.score) AS median_score,
       quantile_cont(s.score, 0.75) AS q75,
       avg((s.score >= 0.5)::INTEGER) AS share_at_least_half,
       sum(s.prompt_tokens)::BIGINT AS prompt_tokens,
       sum(s.completion_tokens)::BIGINT AS completion_tokens
FROM scores s
LEFT JOIN saes k ON k.id = s.sae
GROUP BY ALL
ORDER BY k.model, s.sae, s.corpus, s.kind, s.explainer, s.simulator;
