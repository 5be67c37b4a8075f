"""The torch correlation engine: the SQL engine's three statistics as blocked sparse products, CPU or CUDA.

Each side is a sparse CSR matrix over (feature, key). Side a's features are cut into tiles of about
PAIRS_PER_TILE co-firing row pairs; a tile's product with side b (torch.sparse.mm, CSR × CSR) is a
sparse (tile × d_sae_b) matrix of only the pairs that co-fire, so memory stays one tile whatever N and
d_sae: nothing of size N × d_sae or d_sae × d_sae is built. all_tokens multiplies the normalised
values v = x / ‖x − x̄‖ in float32 (r = Σ v_a·v_b − u_a·u_b, see featstore.correlation.correlate; u in float64);
cofiring and token_type_mean sum the six raw moments in float64. A tile leaves what the SQL
engine's block summary leaves: the pairs with r >= the floor, each feature's best co-firing partner
(ties: the lower feature id), and which low-u partners it co-fires with, from which the exact best
never-co-firing match follows.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from featstore.correlation.engines.sides import (
    Rows,
    best_table,
    load_sides,
    pairs_table,
    registered,
)
from featstore.models.hf import resolve_device
from featstore.warehouse.queries import run as run_query

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)

PAIRS_PER_TILE = 1 << 22  # co-firing row pairs per tile product (its output holds at most that many pairs)
LOW_RANKS = 64  # lowest-u partners whose co-firing is tracked per feature, for the best never-co-firing one


@dataclass
class Side:
    """One side as CSR matrices: by_feature (features × keys) to cut into tiles, by_key (keys × features) to multiply."""

    n_features: int
    by_feature: torch.Tensor
    by_key: torch.Tensor
    u: torch.Tensor  # all_tokens: Σx / (‖x − x̄‖·√N) per feature, NaN where r is undefined
    order: torch.Tensor  # all_tokens: the features with a defined r by (u, feature), the SQL engine's rank order
    position: torch.Tensor  # each feature's position in order (-1: not in it)

    @property
    def u32(self) -> torch.Tensor:
        return self.u.float()

    def rows(self, lo: int, hi: int) -> torch.Tensor:
        """Features lo..hi-1 as a CSR (hi − lo) × keys matrix over by_feature's arrays."""
        crow, col, val = self.by_feature.crow_indices(), self.by_feature.col_indices(), self.by_feature.values()
        start, stop = int(crow[lo]), int(crow[hi])
        return torch.sparse_csr_tensor(crow[lo:hi + 1] - start, col[start:stop], val[start:stop],
                                       (hi - lo, self.by_feature.shape[1]))


@contextmanager
def compute(con: duckdb.DuckDBPyConnection, run: dict, progress: bool | None):
    """Engine entry point (see featstore.correlation.engines): results registered on `con` as torch_pairs, torch_best_a, torch_best_b."""
    device = resolve_device(None)
    workers = 1 if device.type == "cuda" else run_query(con, "correlation/threads").fetchone()[0]
    dtype = torch.float32 if run["statistic"].implicit_zeros else torch.float64
    with torch.no_grad():
        a, b = (_side(rows, device, dtype) for rows in load_sides(con, run))
        with registered(con, "torch", *correlate_sides(a, b, run, workers, progress)) as results:
            yield results


def _side(rows: Rows, device: torch.device, dtype: torch.dtype) -> Side:
    """One side's rows (featstore.correlation.engines.sides) as CSR matrices on `device`."""
    key, feature = (torch.as_tensor(a.astype(np.int64), device=device) for a in (rows.key, rows.feature))
    x = torch.as_tensor(rows.x, device=device).to(dtype)
    u, order, position = (torch.as_tensor(a, device=device) for a in (rows.u, rows.order, rows.position))
    return Side(rows.n_features, _csr(feature, key, x, (rows.n_features, rows.n_keys)),
                _csr(key, feature, x, (rows.n_keys, rows.n_features)), u, order, position)


def _csr(row: torch.Tensor, col: torch.Tensor, value: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """CSR matrix of distinct (row, col) entries, columns sorted within each row (no sort when already so)."""
    flat = row * shape[1] + col
    if not bool((flat[1:] > flat[:-1]).all()):
        order = torch.argsort(flat)
        col, value = col[order], value[order]
    counts = torch.bincount(row, minlength=shape[0])
    crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    return torch.sparse_csr_tensor(crow, col, value, shape)


# -- tiles -----------------------------------------------------------------------------------------


def correlate_sides(a: Side, b: Side, run: dict, workers: int, progress: bool | None) -> tuple[dict[str, pa.Table], int]:
    """Pairs with r >= floor and best matches of both sides (Arrow tables) plus the number of defined pairs."""
    all_tokens = run["statistic"].implicit_zeros
    weights = _pair_counts(a, b)
    tiles = _tiles(weights)
    merged = Merged(a, b, all_tokens)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # one tile per core: tiles are independent
    try:
        with tqdm(total=int(weights.sum()), unit="pair", unit_scale=True, desc=f"correlate {run['stat']} (torch)",
                  disable=None if progress is None else not progress) as bar, ThreadPoolExecutor(workers) as pool:
            for (lo, hi), summary in zip(tiles, pool.map(lambda t: _tile(a, b, *t, run["r_floor"], all_tokens, run["min_n"]), tiles)):
                merged.add(lo, hi, summary)
                bar.update(int(weights[lo:hi].sum()))
    finally:
        torch.set_num_threads(previous)
    return merged.tables(), merged.n_defined


def _pair_counts(a: Side, b: Side) -> torch.Tensor:
    """Per feature of a, the co-firing row pairs its product with b expands (rows of b on its keys)."""
    crow, keys = a.by_feature.crow_indices(), a.by_feature.col_indices()
    features = torch.repeat_interleave(torch.arange(a.n_features, device=crow.device), crow[1:] - crow[:-1])
    b_crow = b.by_key.crow_indices()
    return torch.bincount(features, weights=(b_crow[1:] - b_crow[:-1])[keys].double(), minlength=a.n_features)


def _tiles(weights: torch.Tensor) -> list[tuple[int, int]]:
    """Contiguous feature ranges of about PAIRS_PER_TILE co-firing row pairs each; empty ranges left out."""
    ends = torch.cumsum(weights, 0)
    targets = torch.arange(1, int(ends[-1]) // PAIRS_PER_TILE + 1, device=ends.device, dtype=torch.float64) * PAIRS_PER_TILE
    cuts = sorted({0, *torch.searchsorted(ends, targets, right=True).tolist(), weights.numel()})
    return [(lo, hi) for lo, hi in zip(cuts, cuts[1:]) if weights[lo:hi].sum() > 0]


def tile_product(rows: torch.Tensor, other: Side, moments: bool):
    """(row, col) of the co-firing pairs of a tile's CSR rows with `other`, and their sums over shared keys:
    (Σ x·y,) in float32, or the raw moments (n, Σx, Σy, Σx², Σy², Σxy) in float64."""
    if not moments:
        product = torch.sparse.mm(rows, other.by_key)
        return _coordinates(product), (product.values(),)
    x, y = rows.to(torch.float64), other.by_key.to(torch.float64)
    ones_x, ones_y = _with_values(x, torch.ones_like(x.values())), _with_values(y, torch.ones_like(y.values()))
    squares_x, squares_y = _with_values(x, x.values() ** 2), _with_values(y, y.values() ** 2)
    factors = ((ones_x, ones_y), (x, ones_y), (ones_x, y), (squares_x, ones_y), (ones_x, squares_y), (x, y))
    products = [torch.sparse.mm(p, q) for p, q in factors]
    return _coordinates(products[0]), tuple(p.values() for p in products)  # one pattern: every value is positive


def _with_values(m: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.sparse_csr_tensor(m.crow_indices(), m.col_indices(), values, m.shape)


def _coordinates(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    crow = m.crow_indices()
    rows = torch.repeat_interleave(torch.arange(m.shape[0], device=crow.device), crow[1:] - crow[:-1])
    return rows, m.col_indices()


@dataclass
class TileSummary:
    pairs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # feature_a, feature_b, r with r >= floor
    row_r: torch.Tensor  # best co-firing r per feature of the tile (-inf: none) and its partner
    row_match: torch.Tensor
    col_r: torch.Tensor  # best r per feature of b within the tile and its partner in a
    col_match: torch.Tensor
    row_gap: torch.Tensor  # all_tokens: position in b.order of each feature's best never-co-firing partner (-1: none)
    low: tuple[torch.Tensor, torch.Tensor]  # all_tokens: (position in a.order < LOW_RANKS, feature of b) of co-firing pairs
    n_defined: int


def _tile(a: Side, b: Side, lo: int, hi: int, r_floor: float, all_tokens: bool, min_n: int) -> TileSummary:
    (rows, cols), sums = tile_product(a.rows(lo, hi), b, moments=not all_tokens)
    if all_tokens:
        r = torch.clamp(sums[0] - a.u32[lo + rows] * b.u32[cols], -1, 1)  # float32: |Δr| ~ 1e-7
    else:
        rows, cols, r = _moments_r(rows, cols, *sums, min_n=min_n)
    keep = r >= r_floor
    row_r, row_match = best_per(rows, cols, r, hi - lo)
    col_r, col_match = best_per(cols, rows + lo, r, b.n_features)
    empty = torch.empty(0, dtype=torch.int64, device=r.device)
    row_gap, low = empty, (empty, empty)
    if all_tokens:
        row_gap = first_gaps(rows, b.position[cols], hi - lo, b.order.numel())
        tracked_rows = (a.position[lo:hi] >= 0) & (a.position[lo:hi] < LOW_RANKS)
        if tracked_rows.any():
            tracked = tracked_rows[rows]
            low = (a.position[lo + rows[tracked]], cols[tracked])
    return TileSummary((rows[keep] + lo, cols[keep], r[keep]), row_r, row_match, col_r, col_match, row_gap, low, r.numel())


def _moments_r(rows, cols, n, sx, sy, sxx, syy, sxy, min_n: int):
    """The pairs with a defined Pearson r, from their raw moments, and r (sql/225_corr_block_moments.sql)."""
    var_x, var_y = n * sxx - sx * sx, n * syy - sy * sy
    defined = (n >= min_n) & (var_x > 1e-9 * n * sxx) & (var_y > 1e-9 * n * syy)
    r = torch.clamp((n * sxy - sx * sy)[defined] / torch.sqrt(var_x[defined] * var_y[defined]), -1, 1)
    return rows[defined], cols[defined], r


def best_per(group: torch.Tensor, partner: torch.Tensor, r: torch.Tensor, size: int):
    """Per group 0..size-1, the highest r (-inf: none) and its partner (-1: none; ties: the lowest partner)."""
    best = torch.full((size,), float("-inf"), dtype=r.dtype, device=r.device).scatter_reduce(0, group, r, "amax")
    top = r == best[group]
    match = torch.full((size,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=r.device)
    match = match.scatter_reduce(0, group[top], partner[top], "amin")
    return best, torch.where(torch.isneginf(best), -1, match)


def first_gaps(group: torch.Tensor, position: torch.Tensor, size: int, n_positions: int) -> torch.Tensor:
    """Per group 0..size-1, the lowest position 0..n_positions-1 it has no pair at (-1: it has them all).

    A (size × LOW_RANKS) table of the low positions answers almost every group; the rest search all positions."""
    width = min(LOW_RANKS, n_positions)
    gaps = torch.full((size,), -1, dtype=torch.int64, device=group.device)
    free = _free(group, position, size, width)
    found = free.any(dim=1)
    gaps[found] = free[found].int().argmax(dim=1)
    rest = torch.nonzero(~found).squeeze(1) if n_positions > width else gaps[:0]
    if rest.numel():
        local = torch.full((size,), -1, dtype=torch.int64, device=group.device)
        local[rest] = torch.arange(rest.numel(), device=group.device)
        mine = local[group] >= 0
        free = _free(local[group[mine]], position[mine], rest.numel(), n_positions)
        hit = free.any(dim=1)
        gaps[rest[hit]] = free[hit].int().argmax(dim=1)
    return gaps


def _free(group: torch.Tensor, position: torch.Tensor, size: int, width: int) -> torch.Tensor:
    """(size × width) bool: True where the group has no pair at that position (position -1: no position)."""
    taken = torch.zeros((size, width), dtype=torch.bool, device=group.device)
    low = (position >= 0) & (position < width)
    taken[group[low], position[low]] = True
    return ~taken


# -- merging tiles into the stored results ---------------------------------------------------------


class Merged:
    """Running results over the tiles, merged in tile order (so ties keep the lower feature of a)."""

    def __init__(self, a: Side, b: Side, all_tokens: bool):
        device = a.u.device
        self.a, self.b, self.all_tokens = a, b, all_tokens
        self.pairs: list[tuple] = []
        self.best_a = (torch.full((a.n_features,), float("-inf"), dtype=torch.float64, device=device),
                       torch.full((a.n_features,), -1, dtype=torch.int64, device=device))
        self.best_b = (torch.full((b.n_features,), float("-inf"), dtype=torch.float64, device=device),
                       torch.full((b.n_features,), -1, dtype=torch.int64, device=device))
        # a feature in no tile co-fires with nothing: its gap is the first position (when b has one)
        self.gap_a = torch.full((a.n_features,), 0 if b.order.numel() else -1, dtype=torch.int64, device=device)
        self.low_cofiring = torch.zeros((min(LOW_RANKS, a.order.numel()), b.n_features), dtype=torch.bool, device=device)
        self.n_defined = 0

    def add(self, lo: int, hi: int, t: TileSummary) -> None:
        self.pairs.append(t.pairs)
        self.best_a[0][lo:hi], self.best_a[1][lo:hi] = t.row_r, t.row_match
        better = t.col_r > self.best_b[0]  # strict: on a tie the earlier tile (lower feature of a) stays
        self.best_b[0][better], self.best_b[1][better] = t.col_r[better].double(), t.col_match[better]
        if self.all_tokens:
            self.gap_a[lo:hi] = t.row_gap
            self.low_cofiring[t.low] = True
        self.n_defined += t.n_defined

    def tables(self) -> dict[str, pa.Table]:
        a_feature, b_feature, r = (torch.cat(column) for column in zip(*self.pairs)) if self.pairs else (torch.empty(0),) * 3
        a, b = self.a, self.b
        return {"pairs": pairs_table(*map(_numpy, (a_feature, b_feature, r))),
                "best_a": best_table(*map(_numpy, (a.u, b.u, b.order, *self.best_a, self.gap_a))),
                "best_b": best_table(*map(_numpy, (b.u, a.u, a.order, *self.best_b, self._gaps_b())))}

    def _gaps_b(self) -> torch.Tensor:
        """Per feature of b, the position in a.order of its best never-co-firing partner; saturated ones searched exactly."""
        b, a = self.b, self.a
        gaps = torch.full((b.n_features,), -1, dtype=torch.int64, device=b.u.device)
        if not self.all_tokens or b.order.numel() == 0 or a.order.numel() == 0:
            return gaps
        free = ~self.low_cofiring[:, b.order]
        found = free.any(dim=0)
        gaps[b.order[found]] = free[:, found].int().argmax(dim=0)
        for feature in b.order[~found].tolist() if a.order.numel() > LOW_RANKS else []:
            (_, partners), _ = tile_product(b.rows(feature, feature + 1), a, moments=False)
            gaps[feature] = first_gaps(torch.zeros_like(partners), a.position[partners], 1, a.order.numel())[0]
        return gaps


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.cpu().numpy()
