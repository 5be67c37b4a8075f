"""Correlation engines besides DuckDB SQL (featstore.correlate): numba row products (CPU), torch blocked
products (CPU or CUDA), Spark SQL; `sides` holds what the two array engines share.

Each engine is a context manager `compute(con, run, progress)` yielding the names of three relations
readable on `con` (pairs, best_a, best_b; see featstore.correlate._store) and the number of
co-firing pairs; featstore.correlate stores them in one transaction, the same way for every engine.
"""
