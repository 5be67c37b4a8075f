-- Every feature's score on its own explanation, with its SAE's model (Figure 6's histograms).
SELECT k.model, s.corpus, s.score
FROM scores s
JOIN saes k ON k.id = s.sae
WHERE s.kind = 'self' AND s.score IS NOT NULL
ORDER BY k.created_at, s.corpus;
