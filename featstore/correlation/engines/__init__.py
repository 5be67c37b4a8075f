"""Correlation engines, by name: DuckDB SQL (`sql.py`, the default on CPU), numba row products (CPU),
torch blocked products (CPU or CUDA), Spark SQL; `sides.py` holds what the two array engines share.

Each engine's module has a context manager `compute(con, run, progress)` (Spark's is made by
`engine(master)`) yielding the names of three relations readable on `con` (pairs, best_a, best_b)
and the number of co-firing pairs; `featstore.correlation.correlate` stores them in one
transaction, the same way for every engine. To add one: a module here and a line in ENGINES.
"""

from __future__ import annotations

import importlib

from featstore.errors import FeatstoreError

ENGINES = ("auto", "sql", "numba", "torch", "spark")


def get_engine(name: str, spark_master: str | None):
    """(name, compute step) of engine `name`; `auto` is torch on a CUDA machine, else sql."""
    if name == "auto":
        import torch

        name = "torch" if torch.cuda.is_available() else "sql"
    if name not in ENGINES:
        raise FeatstoreError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}")
    module = importlib.import_module(f"featstore.correlation.engines.{name}")
    return name, module.engine(spark_master) if name == "spark" else module.compute
