INSERT OR IGNORE INTO llm_cache (prompt_hash, backend, task, request, result, prompt_tokens, completion_tokens)
VALUES (?, ?, ?, ?, ?, ?, ?);
