-- The models of the run overview, with validation loss and accuracy per domain (view run_models).
SELECT * FROM run_models;
