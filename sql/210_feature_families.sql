-- feature_families at threshold 0.8 on all_tokens; feature_families(...) for others.
CREATE OR REPLACE VIEW feature_families AS SELECT * FROM feature_families();
