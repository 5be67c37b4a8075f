-- merge_inheritance at threshold 0.8 on all_tokens; merge_inheritance(...) for others.
CREATE OR REPLACE VIEW merge_inheritance AS SELECT * FROM merge_inheritance();
