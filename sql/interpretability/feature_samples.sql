-- Examples per feature for automated interpretability, as in the paper: activations min-max
-- normalised and quantised to bins 0..9 (the maximum in bin 9; the minimum is 0 unless the feature
-- fires on every token). A feature's firing tokens are split in two halves by activation rank
-- (odd ranks: the explainer's half; even ranks: held out), so the held-out half has the same
-- activation profile and rare features keep examples to be scored on. Per feature, each token
-- occurrence used once:
--   shown to the explainer (the paper's recipe, on the explainer's half)
--     top             the n_top highest activations,
--     quantile        the per_bin highest of every lower bin (0..8),
--     random          n_random other activating tokens,
--     top_token       up to n_top_token other occurrences of the top tokens (new contexts; not
--                     firing, or firing in the explainer's half);
--   held out for scoring the simulator
--     heldout_top     the n_heldout_top highest activations of the held-out half,
--     heldout_random  n_heldout_random other tokens of the held-out half,
--     zero            up to n_zero random tokens where the feature does not fire.
-- Random picks order by hash(seed, feature, tok), so a seed always draws the same examples.
-- Each example carries its context rebuilt from tokens + vocab: n_before tokens, the target, n_after.
-- Usage: SELECT * FROM feature_samples('<sae>', '<corpus>', features := [3, 7]);
CREATE OR REPLACE MACRO feature_samples(
    sae_id, corpus_name, features := NULL, seed := 0,
    n_top := 10, per_bin := 2, n_random := 5, n_top_token := 10,
    n_heldout_top := 10, n_heldout_random := 10, n_zero := 20,
    n_before := 12, n_after := 4
) AS TABLE
WITH acts AS (
    SELECT tok, feature, act
    FROM activations
    WHERE sae = sae_id AND corpus = corpus_name AND act > 0
      AND (features IS NULL OR list_contains(features, feature))
),
corpus_tokens AS (
    SELECT tok, doc_id, pos, token_id FROM tokens WHERE corpus = corpus_name
),
ranges AS (
    SELECT feature, max(act) AS hi,
           CASE WHEN count(*) < (SELECT count(*) FROM corpus_tokens) THEN 0 ELSE min(act) END AS lo
    FROM acts GROUP BY feature
),
binned AS (
    SELECT *, row_number() OVER (PARTITION BY feature, held_out ORDER BY act DESC, tok) AS half_rank
    FROM (
        SELECT a.tok, a.feature, a.act,
               CASE WHEN r.hi = r.lo THEN 9
                    ELSE least(9, floor(10 * (a.act - r.lo) / (r.hi - r.lo))) END::TINYINT AS bin,
               row_number() OVER (PARTITION BY a.feature ORDER BY a.act DESC, a.tok) % 2 = 0 AS held_out
        FROM acts a JOIN ranges r USING (feature)
    )
),
shown_half AS (SELECT * FROM binned WHERE NOT held_out),
held_half AS (SELECT * FROM binned WHERE held_out),
top_token_ids AS (
    SELECT DISTINCT b.feature, t.token_id
    FROM shown_half b JOIN corpus_tokens t USING (tok)
    WHERE b.half_rank <= n_top
),
-- Seeded occurrences of every token id, enough to skip the taken and the held-out ones.
token_occurrences AS (
    SELECT tok, token_id FROM corpus_tokens
    QUALIFY row_number() OVER (PARTITION BY token_id ORDER BY hash(seed, tok))
            <= 3 * (n_top + 9 * per_bin + n_random + n_top_token)
),
zero_pool AS (
    SELECT tok FROM corpus_tokens ORDER BY hash(seed, tok) LIMIT 10 * n_zero
),
top AS (
    SELECT feature, tok, act, bin, 'top' AS kind, 1 AS priority, half_rank::DOUBLE AS ord
    FROM shown_half WHERE half_rank <= n_top
),
quantile AS (
    SELECT feature, tok, act, bin, 'quantile', 2, half_rank FROM shown_half
    WHERE half_rank > n_top AND bin < 9
    QUALIFY row_number() OVER (PARTITION BY feature, bin ORDER BY half_rank) <= per_bin
),
random_pick AS (
    SELECT feature, tok, act, bin, 'random', 3, hash(seed, feature, tok) AS ord FROM shown_half b
    WHERE half_rank > n_top
      AND NOT EXISTS (SELECT 1 FROM quantile q WHERE q.feature = b.feature AND q.tok = b.tok)
    QUALIFY row_number() OVER (PARTITION BY feature ORDER BY ord, tok) <= n_random
),
shown_firing AS (
    SELECT feature, tok FROM top UNION ALL SELECT feature, tok FROM quantile
    UNION ALL SELECT feature, tok FROM random_pick
),
top_token AS (
    SELECT i.feature, o.tok, coalesce(b.act, 0) AS act, coalesce(b.bin, 0) AS bin, 'top_token', 4,
           hash(seed, i.feature, o.tok) AS ord
    FROM top_token_ids i JOIN token_occurrences o USING (token_id)
    LEFT JOIN binned b ON b.feature = i.feature AND b.tok = o.tok
    WHERE NOT coalesce(b.held_out, false)
      AND NOT EXISTS (SELECT 1 FROM shown_firing s WHERE s.feature = i.feature AND s.tok = o.tok)
    QUALIFY row_number() OVER (PARTITION BY i.feature ORDER BY ord, o.tok) <= n_top_token
),
heldout_top AS (
    SELECT feature, tok, act, bin, 'heldout_top', 5, half_rank FROM held_half WHERE half_rank <= n_heldout_top
),
heldout_random AS (
    SELECT feature, tok, act, bin, 'heldout_random', 6, hash(seed, feature, tok) AS ord FROM held_half
    WHERE half_rank > n_heldout_top
    QUALIFY row_number() OVER (PARTITION BY feature ORDER BY ord, tok) <= n_heldout_random
),
zero AS (
    SELECT r.feature, z.tok, 0 AS act, 0 AS bin, 'zero', 7, hash(seed, r.feature, z.tok) AS ord
    FROM ranges r CROSS JOIN zero_pool z
    WHERE NOT EXISTS (SELECT 1 FROM acts a WHERE a.feature = r.feature AND a.tok = z.tok)
      AND NOT EXISTS (SELECT 1 FROM top_token t WHERE t.feature = r.feature AND t.tok = z.tok)
    QUALIFY row_number() OVER (PARTITION BY r.feature ORDER BY ord, z.tok) <= n_zero
),
picked AS (
    SELECT * FROM top UNION ALL SELECT * FROM quantile UNION ALL SELECT * FROM random_pick
    UNION ALL SELECT * FROM top_token UNION ALL SELECT * FROM heldout_top
    UNION ALL SELECT * FROM heldout_random UNION ALL SELECT * FROM zero
),
ranked AS (
    SELECT p.*, t.doc_id, t.pos,
           row_number() OVER (PARTITION BY p.feature, p.kind, CASE WHEN p.kind = 'quantile' THEN p.bin END
                              ORDER BY p.ord, p.tok)::INTEGER AS rank
    FROM picked p JOIN corpus_tokens t USING (tok)
),
window_tokens AS (
    SELECT r.feature, r.tok, w.shift, v.text
    FROM ranked r
    CROSS JOIN (SELECT unnest(range(-n_before, n_after + 1)) AS shift) w
    JOIN corpus_tokens t ON t.doc_id = r.doc_id AND t.pos = r.pos + w.shift
    JOIN vocab v ON v.token_id = t.token_id
        AND v.tokenizer = (SELECT tokenizer FROM corpora WHERE name = corpus_name)
),
contexts AS (
    SELECT feature, tok,
           coalesce(string_agg(text, '' ORDER BY shift) FILTER (WHERE shift < 0), '') AS before,
           coalesce(max(text) FILTER (WHERE shift = 0), '') AS token,
           coalesce(string_agg(text, '' ORDER BY shift) FILTER (WHERE shift > 0), '') AS after
    FROM window_tokens GROUP BY feature, tok
)
SELECT r.feature, r.tok, r.kind, r.rank, r.act::FLOAT AS act, r.bin::TINYINT AS bin, r.doc_id, r.pos,
       c.before, c.token, c.after
FROM ranked r JOIN contexts c USING (feature, tok)
ORDER BY r.feature, r.priority, r.rank;
