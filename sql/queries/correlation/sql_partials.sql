-- Each side's best partner per feature among the blocks' summaries, and the number of co-firing pairs.
CREATE TABLE corr_work.partial_a AS SELECT feature, match, r, mask FROM corr_work.found WHERE kind = 'a';
CREATE TABLE corr_work.partial_b AS SELECT feature, match, r, mask FROM corr_work.found WHERE kind = 'b';
SELECT coalesce(sum(n), 0) FROM corr_work.found WHERE kind = 'a';
