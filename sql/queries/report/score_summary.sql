-- The table under Figure 6: self-explanation scores per SAE and corpus (view score_summary).
SELECT * FROM score_summary WHERE kind = 'self';
