"""The torch correlation engine: the SQL engine's three statistics as blocked sparse products, CPU or CUDA.

Side a's features are cut into tiles; the products of a tile's rows with side b's rows on the same
key are scattered into a dense (tile × d_sae_b) accumulator, so memory is one tile per worker
whatever N and d_sae: nothing of size N × d_sae or d_sae × d_sae is built. For all_tokens each
product v_a·v_b of normalised values (featstore.correlate's r = Σ v_a·v_b − u_a·u_b) is taken in
float32 and summed in float64, as DuckDB's sum(FLOAT) does; the raw moments of cofiring and
token_type_mean and every per-feature statistic are float64. A tile leaves what the SQL engine's
block summary leaves: the pairs with r >= the floor, each feature's best co-firing partner, and which
of the lowest-u partners it co-fires with, from which the exact best never-co-firing match follows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from featstore.capture import select_device
from featstore.correlate import load_rows

TILE_CELLS = 1 << 22  # accumulator cells per tile: 32 MiB of float64 per summed moment
PAIRS_PER_CHUNK = 1 << 22  # co-firing row pairs expanded at once (about 40 bytes each)
LOW_RANKS = 64  # lowest-u partners whose co-firing is tracked per feature, for the best never-co-firing one
MOMENTS = 6  # n, Σx, Σy, Σx², Σy², Σxy per pair (cofiring, token_type_mean)


@dataclass
class Side:
    """One side's rows, grouped by feature (to be cut into tiles) and by key (to be joined on)."""

    n_features: int
    feature: torch.Tensor  # rows in feature order
    key: torch.Tensor
    x: torch.Tensor
    feature_ptr: torch.Tensor  # rows of feature f: feature_ptr[f]:feature_ptr[f + 1]
    key_ptr: torch.Tensor  # rows of key k in key order: key_ptr[k]:key_ptr[k + 1]
    key_feature: torch.Tensor  # feature and x in key order
    key_x: torch.Tensor
    u: torch.Tensor  # all_tokens: Σx / (‖x − x̄‖·√N) per feature, NaN where r is undefined
    order: torch.Tensor  # all_tokens: features with a defined r by (u, feature), the SQL engine's rank order

    @property
    def key_len(self) -> torch.Tensor:
        return self.key_ptr[1:] - self.key_ptr[:-1]


@contextmanager
def compute(con: duckdb.DuckDBPyConnection, run: dict, progress: bool | None):
    """Engine entry point (see featstore.engines): results registered on `con` as torch_pairs, torch_best_a, torch_best_b."""
    device = select_device(None)
    workers = 1 if device.type == "cuda" else con.execute("SELECT current_setting('threads')").fetchone()[0]
    with torch.no_grad():
        tables, n_cofiring = correlate_sides(*_sides(con, run, device), run, workers, progress)
    names = {name: f"torch_{name}" for name in tables}
    for name, table in tables.items():
        con.register(names[name], table)
    try:
        yield names, n_cofiring
    finally:
        for view in names.values():
            con.unregister(view)


def _sides(con: duckdb.DuckDBPyConnection, run: dict, device: torch.device) -> tuple[Side, Side]:
    """Both sides' checked rows (featstore.correlate.load_rows), on `device`, keys counted from 0."""
    rows = {side: con.execute(f"SELECT key, feature, x FROM {load_rows(con, run, side)}").fetchnumpy() for side in "ab"}
    offset = run["tok_start"] if run["stat"] != "token_type_mean" else 0
    n_keys = run["n_tokens"] if run["stat"] != "token_type_mean" else 1 + max(
        (int(r["key"].max()) for r in rows.values() if len(r["key"])), default=0)
    return tuple(_side(rows[s], offset, n_keys, run[f"d_sae_{s}"], run, device) for s in "ab")


def _side(rows: dict, offset: int, n_keys: int, n_features: int, run: dict, device: torch.device) -> Side:
    key = torch.as_tensor(rows["key"].astype(np.int64) - offset, device=device)
    feature = torch.as_tensor(rows["feature"].astype(np.int64), device=device)
    x = torch.as_tensor(rows["x"].astype(np.float64), device=device)
    u = torch.full((n_features,), float("nan"), dtype=torch.float64, device=device)
    order = torch.empty(0, dtype=torch.int64, device=device)
    if run["stat"] == "all_tokens":
        x, keep, u, order = _normalised(feature, x, n_features, run["n_tokens"])
        key, feature = key[keep], feature[keep]
    by_feature = torch.argsort(feature, stable=True)
    by_key = torch.argsort(key, stable=True)
    return Side(
        n_features=n_features, feature=feature[by_feature], key=key[by_feature], x=x[by_feature],
        feature_ptr=_pointers(feature, n_features), key_ptr=_pointers(key, n_keys),
        key_feature=feature[by_key], key_x=x[by_key], u=u, order=order,
    )


def _pointers(index: torch.Tensor, size: int) -> torch.Tensor:
    counts = torch.bincount(index, minlength=size)
    return torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])


def _normalised(feature: torch.Tensor, x: torch.Tensor, n_features: int, n_tokens: int):
    """all_tokens: x / ‖x − x̄‖ as float32, the rows of features with a defined r, u, and the rank order
    (sql/222_corr_feature_stats.sql and 227_corr_normalised.sql, in float64)."""
    sx = torch.bincount(feature, weights=x, minlength=n_features)
    sxx = torch.bincount(feature, weights=x * x, minlength=n_features)
    norm = torch.sqrt(torch.clamp(sxx - sx * sx / n_tokens, min=0))
    defined = norm * norm > 1e-9 * sxx
    u = torch.where(defined, sx / (norm * n_tokens**0.5), torch.full_like(sx, float("nan")))
    features = torch.nonzero(defined).squeeze(1)
    order = features[torch.argsort(u[features], stable=True)]  # ties in u: lower feature first
    keep = defined[feature]
    return (x[keep] / norm[feature[keep]]).float(), keep, u, order


# -- tiles -----------------------------------------------------------------------------------------


def correlate_sides(a: Side, b: Side, run: dict, workers: int, progress: bool | None) -> tuple[dict[str, pa.Table], int]:
    """Pairs with r >= floor and best matches of both sides (Arrow tables) plus the number of defined pairs."""
    all_tokens = run["stat"] == "all_tokens"
    height = max(1, TILE_CELLS // max(b.n_features, 1))
    tiles = [(lo, min(lo + height, a.n_features)) for lo in range(0, a.n_features, height)
             if a.feature_ptr[min(lo + height, a.n_features)] > a.feature_ptr[lo]]
    merged = Merged(a, b, all_tokens)
    total = int(b.key_len[a.key].sum()) if a.key.numel() else 0
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # one tile per core: the scatter-add is serial, tiles are independent
    try:
        with tqdm(total=total, unit="pair", unit_scale=True, desc=f"correlate {run['stat']} (torch)",
                  disable=None if progress is None else not progress) as bar, ThreadPoolExecutor(workers) as pool:
            for summary in pool.map(lambda tile: _tile(a, b, *tile, run["r_floor"], all_tokens), tiles):
                merged.add(summary)
                bar.update(summary.n_products)
    finally:
        torch.set_num_threads(previous)
    return merged.tables(), merged.n_defined


@dataclass
class TileSummary:
    lo: int
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # feature_a, feature_b, r with r >= floor
    row_r: torch.Tensor  # best co-firing r per tile row (-inf: none) and its partner
    row_match: torch.Tensor
    col_r: torch.Tensor  # best r per feature of b within the tile and its partner in a
    col_match: torch.Tensor
    row_gap: torch.Tensor  # all_tokens: position in b.order of each row's best never-co-firing partner (-1: none)
    low_rows: torch.Tensor  # all_tokens: rows of the tile that are among a's LOW_RANKS lowest-u features ...
    low_cofiring: torch.Tensor  # ... and whom of b they co-fire with
    n_defined: int
    n_products: int


def _tile(a: Side, b: Side, lo: int, hi: int, r_floor: float, all_tokens: bool) -> TileSummary:
    start, stop = int(a.feature_ptr[lo]), int(a.feature_ptr[hi])
    sums, n_products = tile_sums(a.key[start:stop], a.feature[start:stop] - lo, a.x[start:stop], hi - lo, b,
                                 1 if all_tokens else MOMENTS)
    r, cofiring, defined = (_all_tokens_r(sums[0], a.u[lo:hi], b.u) if all_tokens else _moments_r(sums))
    r = r.masked_fill(~defined, float("-inf"))
    rows, cols = torch.nonzero(r >= r_floor, as_tuple=True)
    row_r, row_match = r.max(dim=1)
    col_r, col_match = r.max(dim=0)
    empty = torch.empty(0, dtype=torch.int64, device=r.device)
    row_gap, low_rows, low_cofiring = empty, empty, empty
    if all_tokens:
        row_gap = first_gaps(cofiring, b.order)
        low = a.order[:LOW_RANKS]
        low_rows = low[(low >= lo) & (low < hi)] - lo
        low_cofiring = cofiring[low_rows]
    return TileSummary(lo, (rows + lo, cols, r[rows, cols]), row_r, row_match, col_r, col_match + lo,
                       row_gap, low_rows + lo, low_cofiring, int(defined.sum()), n_products)


def tile_sums(key: torch.Tensor, row: torch.Tensor, x: torch.Tensor, height: int, other: Side, moments: int):
    """Sums over shared keys of the products of `height` features' rows (key, row, x) with `other`'s rows:
    shape (moments, height, other.n_features), float64; moments 1 is Σ x·y, 6 the raw moments."""
    width = other.n_features
    sums = torch.zeros(moments, height * width, dtype=torch.float64, device=key.device)
    counts = other.key_len[key]
    ends = torch.cumsum(counts, 0)
    n_products = int(ends[-1]) if ends.numel() else 0
    targets = torch.arange(1, n_products // PAIRS_PER_CHUNK + 1, device=key.device) * PAIRS_PER_CHUNK
    cuts = torch.searchsorted(ends, targets, right=True)
    bounds = [0, *cuts.tolist(), key.numel()]
    for s, e in zip(bounds, bounds[1:]):
        if e <= s:
            continue
        n = counts[s:e]
        size = int(n.sum())
        if size == 0:
            continue
        first = torch.cumsum(n, 0) - n
        partner = torch.arange(size, device=key.device) + torch.repeat_interleave(other.key_ptr[key[s:e]] - first, n, output_size=size)
        cell = torch.repeat_interleave(row[s:e] * width, n, output_size=size) + other.key_feature[partner]
        xs = torch.repeat_interleave(x[s:e], n, output_size=size)
        ys = other.key_x[partner]
        if moments == 1:
            sums[0].index_add_(0, cell, (xs * ys).double())
        else:
            for j, value in enumerate((torch.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys)):
                sums[j].index_add_(0, cell, value)
    return sums.view(moments, height, width), n_products


def _all_tokens_r(s: torch.Tensor, u_a: torch.Tensor, u_b: torch.Tensor):
    """r = Σ v_a·v_b − u_a·u_b on co-firing pairs (the products are all positive), clamped to [−1, 1]."""
    cofiring = s > 0
    return torch.clamp(s - u_a[:, None] * u_b[None, :], -1, 1), cofiring, cofiring


def _moments_r(m: torch.Tensor):
    """Pearson r from n, Σx, Σy, Σx², Σy², Σxy where both fire (sql/225_corr_block_moments.sql)."""
    n, sx, sy, sxx, syy, sxy = m
    var_x, var_y = n * sxx - sx * sx, n * syy - sy * sy
    defined = (n >= 2) & (var_x > 1e-9 * n * sxx) & (var_y > 1e-9 * n * syy)
    r = torch.clamp((n * sxy - sx * sy) / torch.sqrt(var_x * var_y), -1, 1)
    return r, n > 0, defined


def first_gaps(cofiring: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Per row, the first position in `order` of a partner it does not co-fire with (-1: co-fires with all).

    The LOW_RANKS lowest positions answer almost every row; the rest search their whole row."""
    gaps = torch.full((cofiring.shape[0],), -1, dtype=torch.int64, device=cofiring.device)
    low = ~cofiring[:, order[:LOW_RANKS]]
    found = low.any(dim=1)
    gaps[found] = low[found].int().argmax(dim=1)
    rest = torch.nonzero(~found & (order.numel() > LOW_RANKS)).squeeze(1)
    if rest.numel():
        free = ~cofiring[rest][:, order]
        hit = free.any(dim=1)
        gaps[rest[hit]] = free[hit].int().argmax(dim=1)
    return gaps


# -- merging tiles into the stored results ---------------------------------------------------------


class Merged:
    """Running results over tiles, merged in tile order."""

    def __init__(self, a: Side, b: Side, all_tokens: bool):
        device = a.u.device
        self.a, self.b, self.all_tokens = a, b, all_tokens
        self.pairs: list[tuple] = []
        self.best_a = (torch.full((a.n_features,), float("-inf"), dtype=torch.float64, device=device),
                       torch.full((a.n_features,), -1, dtype=torch.int64, device=device))
        self.best_b = (torch.full((b.n_features,), float("-inf"), dtype=torch.float64, device=device),
                       torch.full((b.n_features,), -1, dtype=torch.int64, device=device))
        self.gap_a = torch.full((a.n_features,), -1, dtype=torch.int64, device=device)
        low = a.order[:LOW_RANKS]
        self.low_cofiring = torch.zeros((low.numel(), b.n_features), dtype=torch.bool, device=device)
        self.low_position = torch.full((a.n_features,), -1, dtype=torch.int64, device=device)
        self.low_position[low] = torch.arange(low.numel(), device=device)
        self.n_defined = 0

    def add(self, t: TileSummary) -> None:
        hi = t.lo + t.row_r.numel()
        self.pairs.append(t.pairs)
        self.best_a[0][t.lo:hi], self.best_a[1][t.lo:hi] = t.row_r, t.row_match
        better = t.col_r > self.best_b[0]  # strict: on a tie the earlier tile (lower feature) stays
        self.best_b[0][better], self.best_b[1][better] = t.col_r[better], t.col_match[better]
        if self.all_tokens:
            self.gap_a[t.lo:hi] = t.row_gap
            self.low_cofiring[self.low_position[t.low_rows]] = t.low_cofiring
        self.n_defined += t.n_defined

    def tables(self) -> dict[str, pa.Table]:
        a_feature, b_feature, r = (torch.cat(column) for column in zip(*self.pairs)) if self.pairs else (torch.empty(0),) * 3
        pairs = pa.table({"feature_a": pa.array(_numpy(a_feature).astype(np.uint32)),
                          "feature_b": pa.array(_numpy(b_feature).astype(np.uint32)),
                          "r": pa.array(_numpy(r).astype(np.float32))})
        return {"pairs": pairs, "best_a": self._best(self.a, self.b, *self.best_a, self.gap_a),
                "best_b": self._best(self.b, self.a, *self.best_b, self._gaps_b())}

    def _gaps_b(self) -> torch.Tensor:
        """Per feature of b, the position in a.order of its best never-co-firing partner; saturated ones searched exactly."""
        gaps = torch.full((self.b.n_features,), -1, dtype=torch.int64, device=self.b.u.device)
        if not self.all_tokens or self.b.order.numel() == 0:
            return gaps
        free = ~self.low_cofiring[:, self.b.order]
        found = free.any(dim=0)
        gaps[self.b.order[found]] = free[:, found].int().argmax(dim=0)
        saturated = self.b.order[~found]
        if saturated.numel() and self.a.order.numel() > LOW_RANKS:
            gaps[saturated] = self._search(saturated)
        return gaps

    def _search(self, features: torch.Tensor) -> torch.Tensor:
        """Exact gap positions for a few features of b, from their own products with every feature of a."""
        b, a = self.b, self.a
        spans = [torch.arange(int(b.feature_ptr[f]), int(b.feature_ptr[f + 1]), device=f.device) for f in features]
        rows = torch.cat(spans)
        local = torch.repeat_interleave(torch.arange(features.numel(), device=rows.device),
                                        torch.tensor([s.numel() for s in spans], device=rows.device))
        sums, _ = tile_sums(b.key[rows], local, b.x[rows], features.numel(), a, 1)
        return first_gaps(sums[0] > 0, a.order)

    @staticmethod
    def _best(self_side: Side, other: Side, r: torch.Tensor, match: torch.Tensor, gap: torch.Tensor) -> pa.Table:
        """Best co-firing partner, or the best never-co-firing one (r = −u·u′) when higher (sql/230)."""
        has_gap = (gap >= 0) & ~torch.isnan(self_side.u)
        quiet_match = torch.where(has_gap, other.order[gap.clamp(min=0)] if other.order.numel() else gap, gap)
        quiet_r = torch.where(has_gap, -self_side.u * other.u[quiet_match.clamp(min=0)], torch.full_like(r, float("-inf")))
        use_quiet = has_gap & (quiet_r > r)
        best_r = torch.where(use_quiet, quiet_r, r)
        best_match = torch.where(use_quiet, quiet_match, match)
        undefined = _numpy(torch.isneginf(best_r))
        return pa.table({
            "feature": pa.array(np.arange(self_side.n_features, dtype=np.uint32)),
            "match": pa.array(_numpy(best_match).astype(np.uint32), mask=undefined),
            "r": pa.array(_numpy(best_r).astype(np.float32), mask=undefined),
        })


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()
