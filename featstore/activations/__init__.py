"""Activations: running a model and its SAE over an evaluation slice into sparse Parquet partitions
(ingest, sharded over devices) and importing activations computed elsewhere."""
