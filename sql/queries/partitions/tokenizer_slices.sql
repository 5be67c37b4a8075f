-- Every corpus slice tokenized with $tokenizer, by name, and whether SAE $sae has a partition covering all
-- its tokens there: `featstore ingest MODEL` without --corpus computes the slices without one.
SELECT c.name AS corpus, p.sae IS NOT NULL AS stored
FROM corpora c
LEFT JOIN activation_partitions p ON p.corpus = c.name AND p.sae = $sae AND p.n_tokens = c.n_tokens
WHERE c.tokenizer = $tokenizer
ORDER BY c.name;
