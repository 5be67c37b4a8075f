-- What persists and what emerges, by the token each feature fires on most strongly: per edge, corpus,
-- side and status (persists, disappears, emerges), how many features, the share whose top token is
-- only punctuation or whitespace, and the five most common top tokens. On models that barely learn
-- most persisting features are such token detectors; this is the check.
--   SELECT * FROM status_tokens(threshold := 0.7) WHERE corpus = 'eval-lua';
CREATE OR REPLACE MACRO status_tokens(threshold := 0.8, stat := 'all_tokens', method := NULL, policy := 'best') AS TABLE
WITH verdicts AS (
    SELECT p.parent, p.child, p.relation, p.corpus, p.side, p.status, p.sae, p.feature
    FROM persistence(threshold := threshold, stat := stat, method := method, policy := policy) p
    WHERE p.status IN ('persists', 'disappears', 'emerges')
), top_tok AS (
    SELECT x.sae, x.corpus, x.feature, arg_max(x.tok, x.act) AS tok
    -- joined on the partition keys, so only the partitions of the edges' SAEs and corpora are read
    FROM activations x
    JOIN (SELECT DISTINCT sae, corpus FROM verdicts) s ON s.sae = x.sae AND s.corpus = x.corpus
    GROUP BY ALL
), labelled AS (
    SELECT v.parent, v.child, v.relation, v.corpus, v.side, v.status, t.text,
           regexp_full_match(t.text, '[[:space:][:punct:]]*') AS punctuation
    FROM verdicts v
    JOIN top_tok k ON k.sae = v.sae AND k.corpus = v.corpus AND k.feature = v.feature
    JOIN token_text t ON t.tok = k.tok
), common AS (
    SELECT parent, child, corpus, side, status, text, count(*) AS n,
           row_number() OVER (PARTITION BY parent, child, corpus, side, status ORDER BY count(*) DESC, text) AS rank
    FROM labelled
    GROUP BY parent, child, corpus, side, status, text
    QUALIFY rank <= 5
)
SELECT l.parent, l.child, any_value(l.relation) AS relation, l.corpus, l.side, l.status, count(*) AS features,
       round(avg(l.punctuation::INTEGER), 4) AS share_punctuation,
       (SELECT string_agg(to_json(c.text) || ' ' || c.n, ', ' ORDER BY c.rank) FROM common c
        WHERE c.parent = l.parent AND c.child = l.child AND c.corpus = l.corpus AND c.side = l.side
          AND c.status = l.status) AS top_tokens
FROM labelled l
GROUP BY l.parent, l.child, l.corpus, l.side, l.status
ORDER BY l.parent, l.child, l.corpus, l.side, l.status;
-- status_tokens at threshold 0.8 on all_tokens; status_tokens(...) for others.
CREATE OR REPLACE VIEW status_tokens AS SELECT * FROM status_tokens();
