-- method_agreement with the default policy (best match) and features from the all_tokens run.
CREATE OR REPLACE VIEW edge_agreement AS SELECT * FROM method_agreement();
