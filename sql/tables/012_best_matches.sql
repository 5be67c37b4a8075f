-- For every feature on each side of a run its best match on the other side, whatever its r.
-- side 'a': feature of sae_a, match in sae_b; side 'b': the reverse. r is NULL for a feature that
-- never fires (its correlation is undefined).
CREATE TABLE IF NOT EXISTS best_matches (
    run_id  INTEGER NOT NULL,
    side    VARCHAR NOT NULL CHECK (side IN ('a', 'b')),
    feature UINTEGER NOT NULL,
    match   UINTEGER,
    r       FLOAT
);
