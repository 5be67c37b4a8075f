-- One LLM answer into the cache unless its prompt hash is there already (no INSERT OR IGNORE: a DuckLake
-- catalog has no keys to ignore on).
INSERT INTO llm_cache (prompt_hash, backend, task, request, result, prompt_tokens, completion_tokens)
SELECT * FROM (VALUES (?, ?, ?, ?, ?, ?, ?)) AS new (prompt_hash, backend, task, request, result, prompt_tokens, completion_tokens)
WHERE NOT EXISTS (SELECT 1 FROM llm_cache c WHERE c.prompt_hash = new.prompt_hash);
