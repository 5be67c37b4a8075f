-- Responses of LLM backends keyed by a hash of (backend, request): a rerun after a crash or a
-- rate limit pays only for the calls it has not made yet. Token counts are what the endpoint reported.
CREATE TABLE IF NOT EXISTS llm_cache (
    prompt_hash       VARCHAR PRIMARY KEY,
    backend           VARCHAR NOT NULL,
    task              VARCHAR NOT NULL CHECK (task IN ('explain', 'simulate')),
    request           JSON NOT NULL,
    result            JSON NOT NULL,       -- {"text": …} or {"value": …, "how": …}
    prompt_tokens     BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    created_at        TIMESTAMP DEFAULT current_timestamp
);
