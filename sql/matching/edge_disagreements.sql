-- method_disagreements: the 5 most-disagreeing features per edge, corpus and method pair (best match).
CREATE OR REPLACE VIEW edge_disagreements AS SELECT * FROM method_disagreements();
