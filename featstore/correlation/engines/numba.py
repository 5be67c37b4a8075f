"""The numba correlation engine: the torch engine's tiles (featstore.correlation.engines.torch) as one compiled loop, on CPU.

A tile is a contiguous range of side a's features. For each feature i, every key it fires on and
every feature j of side b firing on that key add x_i·y_j into a dense accumulator over b's features
(a row of Aᵀ·B, Gustavson's algorithm; all_tokens sums the normalised values, the other statistics
the six raw moments), and the row is summarised as soon as it is complete: the pairs with r >= the
floor, i's best co-firing partner (ties: the lower feature), the best partner in a of every b
feature within the tile, i's first never-co-firing partner in b's rank order, and which of the
LOW_RANKS lowest-u features of a co-fire with which b features (for b's never-co-firing partners).
Memory is the two sides' rows plus one accumulator per worker: no N × d_sae or d_sae × d_sae array.
Each entry of a reads the row of a random key of b, a memory access the loop would wait on: the rows
of the entries AHEAD positions on are prefetched.
Tiles run on `threads` workers (the kernels release the GIL); float64 throughout, so r agrees with
the SQL engine to rounding. Compiled on first use and cached beside this file (numba's cache=True).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import duckdb
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.extending import intrinsic
from tqdm.auto import tqdm

from featstore.correlation.engines.sides import (
    Rows,
    best_table,
    load_sides,
    pairs_table,
    registered,
)
from featstore.warehouse.queries import run as run_query

PAIRS_PER_TILE = 1 << 22  # co-firing row pairs per tile, at most; several tiles per worker keep the cores busy
LOW_RANKS = 64  # lowest-u features of a whose co-firing partners are recorded, for b's best never-co-firing one
AHEAD = 16  # entries of a's row whose b row is prefetched ahead of use (their b_ptr entries twice as far)


@contextmanager
def compute(con: duckdb.DuckDBPyConnection, run: dict, progress: bool | None):
    """Engine entry point (see featstore.correlation.engines): results registered on `con` as numba_pairs, numba_best_a, numba_best_b."""
    workers = run_query(con, "correlation/threads").fetchone()[0]
    a, b = load_sides(con, run)
    with registered(con, "numba", *correlate_sides(a, b, run, workers, progress)) as results:
        yield results


def correlate_sides(a: Rows, b: Rows, run: dict, workers: int, progress: bool | None):
    """(pairs, best_a, best_b) as Arrow tables, and the number of defined pairs."""
    all_tokens = run["statistic"].implicit_zeros
    best_a = (np.full(a.n_features, -np.inf), np.full(a.n_features, -1, dtype=np.int64))
    best_b = (np.full(b.n_features, -np.inf), np.full(b.n_features, -1, dtype=np.int64))
    gap_a = np.full(a.n_features, 0 if b.order.size else -1, dtype=np.int64)  # a feature in no tile co-fires with none
    low_width = min(LOW_RANKS, a.order.size) if all_tokens else 0
    low = np.zeros((low_width, b.n_features), dtype=np.bool_)
    pairs, n_defined = [], 0
    with ThreadPoolExecutor(workers) as pool:
        a_rows, b_keys = pool.map(lambda m: csr(*m), [(a.feature, a.key, a.x, a.n_features), (b.key, b.feature, b.x, b.n_keys)])
        weights, a_position = _pair_counts(a_rows, b_keys[0]), a.position
        tiles = _tiles(weights, workers)

        def tile(bounds: tuple[int, int]):
            return _tile(*bounds, *a_rows, a.u, a_position, *b_keys, b.u, b.order, run["r_floor"], run["min_n"], all_tokens,
                         low_width)

        with tqdm(total=int(weights.sum()), unit="pair", unit_scale=True, desc=f"correlate {run['stat']} (numba)",
                  disable=None if progress is None else not progress) as bar:
            for (lo, hi), (pair_a, pair_b, pair_r, row_r, row_match, row_gap, col_r, col_match, low_at, low_b, n) in zip(
                    tiles, pool.map(tile, tiles)):
                pairs.append((pair_a, pair_b, pair_r))
                best_a[0][lo:hi], best_a[1][lo:hi], gap_a[lo:hi] = row_r, row_match, row_gap
                better = col_r > best_b[0]  # strict: on a tie the earlier tile (lower feature of a) stays
                best_b[0][better], best_b[1][better] = col_r[better], col_match[better]
                low[low_at, low_b] = True
                n_defined += n
                bar.update(int(weights[lo:hi].sum()))
    gap_b = _gaps_b(a, b, low) if all_tokens else np.full(b.n_features, -1, dtype=np.int64)
    columns = [np.concatenate(c) for c in zip(*pairs)] if pairs else [np.empty(0)] * 3
    return {"pairs": pairs_table(*columns), "best_a": best_table(a.u, b.u, b.order, *best_a, gap_a),
            "best_b": best_table(b.u, a.u, a.order, *best_b, gap_b)}, n_defined


def _pair_counts(rows: tuple[np.ndarray, np.ndarray], other_ptr: np.ndarray) -> np.ndarray:
    """Per feature, the co-firing row pairs its row expands: the other side's rows on its keys."""
    ptr, entries = rows
    cumulative = np.concatenate([[0], np.cumsum(np.diff(other_ptr)[entries[:, 0].astype(np.int64)])])
    return cumulative[ptr[1:]] - cumulative[ptr[:-1]]


def _tiles(weights: np.ndarray, workers: int) -> list[tuple[int, int]]:
    """Contiguous feature ranges of at most PAIRS_PER_TILE pairs (a heavier feature alone), 4 or more per worker."""
    ends = np.cumsum(weights)
    total = int(ends[-1]) if ends.size else 0
    size = max(1, min(PAIRS_PER_TILE, -(-total // (4 * workers))))
    cuts = np.unique(np.concatenate([[0], np.searchsorted(ends, np.arange(size, total, size), side="right"), [weights.size]]))
    return [(int(lo), int(hi)) for lo, hi in zip(cuts, cuts[1:]) if weights[lo:hi].sum() > 0]


def _gaps_b(a: Rows, b: Rows, low: np.ndarray) -> np.ndarray:
    """Per feature of b, the position in a's order of its best never-co-firing partner; saturated ones searched exactly."""
    gaps = np.full(b.n_features, -1, dtype=np.int64)
    if not b.order.size or not a.order.size:
        return gaps
    free = ~low[:, b.order]
    found = free.any(axis=0)
    gaps[b.order[found]] = free[:, found].argmax(axis=0)
    saturated = b.order[~found] if a.order.size > low.shape[0] else b.order[:0]
    if saturated.size:
        gaps[saturated] = _gap_search(saturated, *csr(b.feature, b.key, b.x, b.n_features),
                                      *csr(a.key, a.feature, a.x, a.n_keys), a.order, a.n_features)
    return gaps


# -- compiled kernels ---------------------------------------------------------------------------------
# A CSR matrix is (ptr, entries): row r's entries are entries[ptr[r]:ptr[r + 1]], each (column, value)
# side by side in one float64 row (columns are ids < 2**53, exact), so reading one costs one cache line.
# A tile's state per feature j of b is one row as well: what the inner loops touch together.
SEEN, COL_R, U_B, XY = 0, 1, 2, 3  # all_tokens state: the last row that touched j, j's best r, u_j, Σ x·y
N, SX, SY, SXX, SYY, SXY = 2, 3, 4, 5, 6, 7  # the other statistics' state: the six raw moments after SEEN, COL_R


@njit(nogil=True, cache=True)
def csr(row, col, value, n_rows):
    """(ptr, entries) of the (row, col, value) triples grouped by row, in input order within a row (a counting sort)."""
    ptr = np.zeros(n_rows + 1, dtype=np.int64)
    for r in row:
        ptr[r + 1] += 1
    for r in range(n_rows):
        ptr[r + 1] += ptr[r]
    fill = ptr[:-1].copy()
    entries = np.empty((row.size, 2))
    for k in range(row.size):
        at = fill[row[k]]
        entries[at, 0], entries[at, 1] = col[k], value[k]
        fill[row[k]] = at + 1
    return ptr, entries


@njit(nogil=True, cache=True)
def _grown(buffer):
    """A copy of `buffer` twice its size."""
    out = np.empty(2 * buffer.size, dtype=buffer.dtype)
    out[:buffer.size] = buffer
    return out


@njit(nogil=True, cache=True)
def _tile(lo, hi, a_ptr, a_entries, a_u, a_position, b_ptr, b_entries, b_u, b_order, r_floor, min_n, all_tokens, low_width):
    """Features lo..hi-1 of a against all of b (see the module docstring); what correlate_sides merges, in tile order."""
    n_b = b_u.size
    state = np.zeros((n_b, 4 if all_tokens else 8))
    state[:, SEEN], state[:, COL_R] = -1.0, -np.inf
    if all_tokens:
        state[:, U_B] = b_u
    touched, above, r = np.empty(n_b, dtype=np.int64), np.empty(n_b, dtype=np.int64), np.empty(n_b)
    col_match = np.full(n_b, -1, dtype=np.int64)
    row_r, row_match = np.full(hi - lo, -np.inf), np.full(hi - lo, -1, dtype=np.int64)
    row_gap = np.full(hi - lo, 0 if b_order.size else -1, dtype=np.int64)
    pairs = (np.empty(1024, dtype=np.int64), np.empty(1024, dtype=np.int64), np.empty(1024))
    low = (np.empty(1024, dtype=np.int64), np.empty(1024, dtype=np.int64), np.empty(1024))
    n_pairs = n_low = n_defined = 0
    for i in range(lo, hi):
        if all_tokens:
            n_touched = _sum_products(i, a_ptr, a_entries, b_ptr, b_entries, state, touched)
        else:
            n_touched = _sum_moments(i, a_ptr, a_entries, b_ptr, b_entries, state, touched)
        if all_tokens:  # r of each touched pair: one loop per statistic, with no branch on it inside
            for t in range(n_touched):
                r[t] = _r_all_tokens(a_u[i], state, touched[t])
        else:
            for t in range(n_touched):
                r[t] = _r_moments(state, touched[t], min_n)
        best, match, n_above = -np.inf, -1, 0
        for t in range(n_touched):
            j, r_ij = touched[t], r[t]
            if r_ij > best or (r_ij == best and j < match):  # NaN (undefined) compares false
                best, match = r_ij, j
            if r_ij > state[j, COL_R]:
                state[j, COL_R], col_match[j] = r_ij, i
            n_defined += r_ij == r_ij
            above[n_above] = t  # kept when r_ij >= r_floor; pushed after the loop, which then never reallocates
            n_above += r_ij >= r_floor
        row_r[i - lo], row_match[i - lo] = best, match
        for t in above[:n_above]:
            pairs, n_pairs = _push(pairs, n_pairs, i, touched[t], r[t])
        if all_tokens:
            if 0 <= a_position[i] < low_width:
                for t in range(n_touched):
                    low, n_low = _push(low, n_low, a_position[i], touched[t], r[t])
            gap = 0
            while gap < b_order.size and state[b_order[gap], SEEN] == i:
                gap += 1
            row_gap[i - lo] = gap if gap < b_order.size else -1
    return (pairs[0][:n_pairs], pairs[1][:n_pairs], pairs[2][:n_pairs], row_r, row_match, row_gap,
            state[:, COL_R].copy(), col_match, low[0][:n_low], low[1][:n_low], n_defined)


@intrinsic
def _prefetch(typingctx, array, offset):
    """Ask the CPU to start loading array's element `offset` (counted in elements of its flat, C-ordered data) into cache."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte_pointer = ir.IntType(8).as_pointer()
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", fnty=ir.FunctionType(ir.VoidType(), [byte_pointer] + [ir.IntType(32)] * 3))
        read, keep_in_all_levels, data_cache = (ir.IntType(32)(flag) for flag in (0, 3, 1))
        address = builder.bitcast(builder.gep(data, [args[1]]), byte_pointer)
        builder.call(prefetch, [address, read, keep_in_all_levels, data_cache])
        return context.get_dummy_value()

    return types.void(array, offset), codegen


@njit(inline="always")
def _prefetch_ahead(p, a_entries, b_ptr, b_entries):
    """Start loading the b row that a's entry p + AHEAD will read, and the b_ptr entry of p + 2·AHEAD.

    Each entry of a reads the row of a random key of b, from memory rather than cache; without this the
    loop waits on each one (all_tokens at 200k tokens x 16,384 features: 3.9-4.3 s per tile loop without, 1.8-2.0 s with)."""
    if p + 2 * AHEAD < a_entries.shape[0]:
        _prefetch(b_ptr, int(a_entries[p + 2 * AHEAD, 0]))
    if p + AHEAD < a_entries.shape[0]:
        key = int(a_entries[p + AHEAD, 0])
        first, last = 2 * b_ptr[key], 2 * b_ptr[key + 1] - 1  # float64 elements: a cache line holds 8
        for element in range(first, last, 8):
            _prefetch(b_entries, element)
        if last > first:
            _prefetch(b_entries, last)


@njit(nogil=True, cache=True)
def _sum_products(i, a_ptr, a_entries, b_ptr, b_entries, state, touched):
    """Row i of Aᵀ·B into state[:, XY], zeroed where row i first touches; returns how many features it touched."""
    n_touched = 0
    for p in range(a_ptr[i], a_ptr[i + 1]):
        _prefetch_ahead(p, a_entries, b_ptr, b_entries)
        key, x = int(a_entries[p, 0]), a_entries[p, 1]
        for q in range(b_ptr[key], b_ptr[key + 1]):
            j = int(b_entries[q, 0])
            if state[j, SEEN] != i:
                state[j, SEEN], state[j, XY] = i, 0.0
                touched[n_touched] = j
                n_touched += 1
            state[j, XY] += x * b_entries[q, 1]
    return n_touched


@njit(nogil=True, cache=True)
def _sum_moments(i, a_ptr, a_entries, b_ptr, b_entries, state, touched):
    """_sum_products for the six raw moments over the keys row i shares with each feature of b."""
    n_touched = 0
    for p in range(a_ptr[i], a_ptr[i + 1]):
        _prefetch_ahead(p, a_entries, b_ptr, b_entries)
        key, x = int(a_entries[p, 0]), a_entries[p, 1]
        for q in range(b_ptr[key], b_ptr[key + 1]):
            j, y = int(b_entries[q, 0]), b_entries[q, 1]
            if state[j, SEEN] != i:
                state[j, SEEN], state[j, N:] = i, 0.0
                touched[n_touched] = j
                n_touched += 1
            state[j, N] += 1.0
            state[j, SX] += x
            state[j, SY] += y
            state[j, SXX] += x * x
            state[j, SYY] += y * y
            state[j, SXY] += x * y
    return n_touched


@njit(inline="always")
def _r_all_tokens(u_a, state, j):
    """r = Σ v_a·v_b − u_a·u_b (featstore.correlation.correlate)."""
    return min(max(state[j, XY] - u_a * state[j, U_B], -1.0), 1.0)


@njit(inline="always")
def _r_moments(state, j, min_n):
    """Pearson r from the raw moments; NaN where undefined (sql/correlation/corr_block_moments.sql)."""
    n, sx, sy, sxx, syy, sxy = state[j, N], state[j, SX], state[j, SY], state[j, SXX], state[j, SYY], state[j, SXY]
    var_x, var_y = n * sxx - sx * sx, n * syy - sy * sy
    if n < min_n or var_x <= 1e-9 * n * sxx or var_y <= 1e-9 * n * syy:
        return np.nan
    return min(max((n * sxy - sx * sy) / np.sqrt(var_x * var_y), -1.0), 1.0)


@njit(nogil=True, cache=True)
def _push(buffers, n, row, col, value):
    """(row, col, value) appended as the n-th entry of the three buffers (grown when full)."""
    rows, cols, values = buffers
    if n == rows.size:
        rows, cols, values = _grown(rows), _grown(cols), _grown(values)
    rows[n], cols[n], values[n] = row, col, value
    return (rows, cols, values), n + 1


@njit(nogil=True, cache=True)
def _gap_search(features, b_ptr, b_entries, a_ptr, a_entries, a_order, n_a):
    """Per feature of b, the first position of a's order whose feature never co-fires with it (-1: none)."""
    gaps = np.full(features.size, -1, dtype=np.int64)
    seen = np.full(n_a, -1, dtype=np.int64)
    for f in range(features.size):
        j = features[f]
        for p in range(b_ptr[j], b_ptr[j + 1]):
            key = int(b_entries[p, 0])
            for q in range(a_ptr[key], a_ptr[key + 1]):
                seen[int(a_entries[q, 0])] = j
        gap = 0
        while gap < a_order.size and seen[a_order[gap]] == j:
            gap += 1
        gaps[f] = gap if gap < a_order.size else -1
    return gaps
