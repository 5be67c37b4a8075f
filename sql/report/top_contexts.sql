-- The n strongest activations of one SAE feature (on one corpus, or on all when corpus_name is
-- NULL), each with the tokens around it (width on each side, same document) and the feature's
-- activation on every one of them: the token-highlighted examples of the report (Figures 3-4).
-- position 0 is the top token itself.
CREATE OR REPLACE MACRO top_contexts(sae_id, feature_id, corpus_name := NULL, n := 5, width := 8) AS TABLE
WITH feature_acts AS (
    SELECT tok, act FROM activations
    WHERE sae = sae_id AND feature = feature_id AND (corpus_name IS NULL OR corpus = corpus_name)
), centre AS (
    SELECT row_number() OVER (ORDER BY f.act DESC, f.tok) AS rank, t.tok, t.corpus, t.doc_id, t.pos
    FROM feature_acts f JOIN tokens t USING (tok)
    QUALIFY rank <= n
)
SELECT c.rank, c.corpus, c.tok AS top_tok, w.pos - c.pos AS position, w.text,
       coalesce(f.act, 0)::FLOAT AS act
FROM centre c
JOIN token_text w ON w.corpus = c.corpus AND w.doc_id = c.doc_id AND w.pos BETWEEN c.pos - width AND c.pos + width
LEFT JOIN feature_acts f ON f.tok = w.tok
ORDER BY c.rank, position;
