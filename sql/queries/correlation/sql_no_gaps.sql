-- Without implicit zeros every feature's best partner co-fires with it: no gaps to search.
CREATE TABLE corr_work.gaps_{{side}} (feature UINTEGER, gap_rank BIGINT);
