"""What the array engines (torch, numba) share: each side's checked rows as arrays with the all_tokens
normalisation and rank order (sql/correlation/corr_feature_stats.sql and corr_normalised.sql, in
float64), and the result relations built from their arrays and registered on the run's connection.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from featstore.correlation.inputs import load_rows


@dataclass
class Rows:
    """One side's (key, feature, x) rows; all_tokens keeps only features with a defined r and x / ‖x − x̄‖."""

    key: np.ndarray  # unsigned integers as read, counted from 0
    feature: np.ndarray  # unsigned integers as read
    x: np.ndarray  # float64
    n_keys: int
    n_features: int
    u: np.ndarray  # all_tokens: Σx / (‖x − x̄‖·√N) per feature, NaN where r is undefined
    order: np.ndarray  # all_tokens: the features with a defined r by (u, feature), the SQL engine's rank order

    @property
    def position(self) -> np.ndarray:
        """Each feature's position in order (-1: not in it)."""
        position = np.full(self.n_features, -1, dtype=np.int64)
        position[self.order] = np.arange(self.order.size)
        return position


def load_sides(con: duckdb.DuckDBPyConnection, run: dict) -> tuple[Rows, Rows]:
    """Both sides' checked rows (featstore.correlation.inputs.load_rows), keys counted from 0 and shared by both."""
    raw = {side: con.execute(f"SELECT key, feature, x FROM {load_rows(con, run, side)}").fetchnumpy() for side in "ab"}
    by_tok = run["statistic"].keyed_by_tok
    offset = run["tok_start"] if by_tok else 0
    n_keys = run["n_tokens"] if by_tok else 1 + max((int(r["key"].max()) for r in raw.values() if len(r["key"])), default=0)
    return tuple(_rows(raw[side], offset, n_keys, run[f"d_sae_{side}"], run) for side in "ab")


def _rows(raw: dict, offset: int, n_keys: int, n_features: int, run: dict) -> Rows:
    key, feature, x = raw["key"], raw["feature"], raw["x"].astype(np.float64)
    if offset:
        key = key - key.dtype.type(offset)  # keys are the corpus's tokens: never below its first
    u, order = np.full(n_features, np.nan), np.empty(0, dtype=np.int64)
    if run["statistic"].implicit_zeros:
        n_tokens = run["n_tokens"]
        sx = np.bincount(feature, weights=x, minlength=n_features)
        sxx = np.bincount(feature, weights=x * x, minlength=n_features)
        norm = np.sqrt(np.maximum(sxx - sx * sx / n_tokens, 0))
        defined = norm * norm > 1e-9 * sxx
        u[defined] = sx[defined] / (norm[defined] * n_tokens**0.5)
        features = np.flatnonzero(defined)
        order = features[np.argsort(u[features], kind="stable")]  # ties in u: lower feature first
        keep = defined[feature]
        if not keep.all():
            key, feature, x = key[keep], feature[keep], x[keep]
        x /= norm[feature]
    return Rows(key, feature, x, n_keys, n_features, u, order)


def pairs_table(feature_a: np.ndarray, feature_b: np.ndarray, r: np.ndarray) -> pa.Table:
    columns = [_arrow(feature_a.astype(np.uint32)), _arrow(feature_b.astype(np.uint32)), _arrow(r.astype(np.float32))]
    return pa.Table.from_arrays(columns, names=["feature_a", "feature_b", "r"])


def best_table(u: np.ndarray, other_u: np.ndarray, other_order: np.ndarray, r: np.ndarray, match: np.ndarray,
               gap: np.ndarray) -> pa.Table:
    """Every feature's best match: its best co-firing partner (r, match; -inf: none), or the best
    never-co-firing one, at position `gap` of the other side's order (r = −u·u′), when that is higher
    (sql/correlation/corr_best_matches.sql)."""
    has_gap = (gap >= 0) & ~np.isnan(u)
    quiet = other_order[gap.clip(min=0)] if other_order.size else gap
    quiet_r = np.where(has_gap, -u * other_u[quiet.clip(min=0)], -np.inf)
    use_quiet = has_gap & (quiet_r > r)
    best_r, best_match = np.where(use_quiet, quiet_r, r), np.where(use_quiet, quiet, match)
    undefined = np.isneginf(best_r)
    return pa.Table.from_arrays([_arrow(np.arange(u.size, dtype=np.uint32)), _arrow(best_match.astype(np.uint32), undefined),
                                 _arrow(best_r.astype(np.float32), undefined)], names=["feature", "match", "r"])


def _arrow(values: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """A numeric array as Arrow, `null` marking missing entries: what pa.array does, less its import of
    pandas (to rule out a DataFrame), 0.8 s of every correlate call that needs pandas nowhere else."""
    values = np.ascontiguousarray(values)
    validity = None if null is None else pa.py_buffer(np.packbits(~null, bitorder="little"))
    return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), values.size, [validity, pa.py_buffer(values)])


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, engine: str, tables: dict[str, pa.Table], n_cofiring: int):
    """The engine entry points' yield (featstore.correlation.engines): `tables` registered on `con` as {engine}_{name}."""
    names = {name: f"{engine}_{name}" for name in tables}
    for name, table in tables.items():
        con.register(names[name], table)
    try:
        yield names, n_cofiring
    finally:
        for view in names.values():
            con.unregister(view)
