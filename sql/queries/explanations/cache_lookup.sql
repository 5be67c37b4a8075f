SELECT prompt_hash, result, prompt_tokens, completion_tokens
FROM llm_cache
WHERE list_contains($keys, prompt_hash);
