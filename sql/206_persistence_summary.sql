-- persistence_summary at threshold 0.8 on all_tokens; persistence_summary(...) for others.
CREATE OR REPLACE VIEW persistence_summary AS SELECT * FROM persistence_summary();
