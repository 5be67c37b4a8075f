-- One row per step of `featstore run`: the content hash of its inputs (parameters, upstream step
-- hashes, source of the code it runs) decides whether a rerun may skip it.
CREATE TABLE IF NOT EXISTS pipeline_steps (
    step        VARCHAR PRIMARY KEY,
    input_hash  VARCHAR NOT NULL,
    status      VARCHAR NOT NULL CHECK (status IN ('running', 'done')),
    preset      VARCHAR,
    params      JSON,
    summary     JSON,                  -- what the step reported (names, counts, metrics)
    seconds     DOUBLE,                -- wall time of the last completed execution
    started_at  TIMESTAMP,
    finished_at TIMESTAMP
);
