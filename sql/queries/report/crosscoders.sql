-- Every crosscoder with its latents per class and quality (view crosscoder_summary): the report's agreement section.
SELECT * FROM crosscoder_summary;
