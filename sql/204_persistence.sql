-- persistence at the paper's threshold 0.8 on the all_tokens statistic; persistence(...) for others.
CREATE OR REPLACE VIEW persistence AS SELECT * FROM persistence();
