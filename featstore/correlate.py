"""Pearson correlation between every feature of two SAEs over the same tokens, in DuckDB SQL.

The work is a sparse join on the token key followed by a GROUP BY over feature pairs; the SQL is in
sql/correlation/ (macros `corr_*`) and sql/queries/correlation/. The statistics are registered in
featstore.statistics (see the README's "Correlation and persistence"):

- all_tokens: r over every token occurrence of the corpus, implicit zeros counted exactly from the
  corpus token count. Rows are pre-divided by their feature's centred norm, so the pair aggregate is
  a single SUM: r(a, b) = Σ v_a·v_b − u_a·u_b (sql/correlation/corr_feature_stats.sql).
- cofiring: r over the occurrences where both features fire.
- token_type_mean: r over per-token-type mean activations, as the paper's released code computes it.

Side a's features are cut into ranges of about PAIRS_PER_BLOCK co-firing row pairs, and each range is
joined with side b's rows grouped per key (one list row per token) and aggregated by its own
single-threaded query, one per core: many small hash tables are much faster than one huge one, and
memory stays bounded at any scale. The pairs never leave that query: it keeps only the pairs with
r >= the floor and, per feature of either side, its best partner in the block (corr_block_summary). From those,
every feature's best match on the other side whatever its r is found (for all_tokens including a
partner it never co-fires with, r = −u_a·u_b).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import duckdb
import pyarrow as pa
from tqdm.auto import tqdm

from featstore.corpus import check_tokenizer
from featstore.db import Database, run as run_query
from featstore.errors import FeatstoreError
from featstore.statistics import MATCH_METHODS, Statistic, get_statistic
from featstore.warehouse import Warehouse

ENGINES = ("auto", "sql", "numba", "torch", "spark")
PAIRS_PER_BLOCK = 1_250_000  # co-firing row pairs per GROUP BY: 0.4M-1.25M measured alike, 2.5M +20%, 5M +40% CPU
MASK_BITS = 63  # lowest-u partners tracked per feature in a bitmask when looking for the best non-co-firing one
# cofiring: r over fewer shared tokens is noise (over 2 it is always ±1); token_type_mean keeps pandas' 2
MIN_COFIRING = 10


def correlate(
    wh: Warehouse,
    sae_a: str,
    sae_b: str,
    *,
    corpus: str | None = None,
    stat: str = "all_tokens",
    r_floor: float = 0.2,
    min_cofiring: int = MIN_COFIRING,
    progress: bool | None = None,
    engine: str = "auto",
    threads: int | None = None,
    spark_master: str | None = None,
) -> dict:
    """Correlate every feature of `sae_a` with every feature of `sae_b` on `corpus` and store the run.

    Replaces an earlier run of the same (sae_a, sae_b, corpus, stat) in one transaction. `corpus`
    may be left out when the two SAEs share exactly one corpus. `engine` is sql, numba, torch, spark or
    auto (torch on CUDA, else sql); every engine fills the same result relations, which one store step
    (featstore.db's correlations.store) commits.
    `threads` caps the cores used (default: all). Returns the run's catalog row.
    """
    started = time.perf_counter()
    run = _check_inputs(wh, sae_a, sae_b, corpus, stat, r_floor)
    if min_cofiring < 2:
        raise FeatstoreError(f"--min-cofiring must be at least 2 (got {min_cofiring}); over 2 tokens r is always ±1")
    run["min_n"] = min_cofiring if stat == "cofiring" else 2
    if threads is not None and threads < 1:
        raise FeatstoreError(f"--threads must be at least 1 (got {threads})")
    if spark_master is not None and engine != "spark":
        raise FeatstoreError(f"--spark-master is for --engine spark (this run uses --engine {engine}); add --engine spark or drop it")
    engine, compute = _engine(engine, spark_master)
    with wh.connect() as con:
        con.execute("SET preserve_insertion_order = false")
        if threads is not None:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"ATTACH ':memory:' AS {WORK}")
        try:
            with compute(con, run, progress) as (results, n_cofiring):
                seconds = time.perf_counter() - started
                con.execute("BEGIN TRANSACTION")
                try:
                    key = {k: run[k] for k in ("sae_a", "sae_b", "corpus", "stat")}
                    run_id = Database(wh).correlations.store(
                        con, key, r_floor=run["r_floor"], n_tokens=run["n_tokens"], seconds=seconds,
                        min_cofiring=min_cofiring if stat == "cofiring" else None, engine=engine,
                        pairs=results["pairs"], best={side: results[f"best_{side}"] for side in "ab"})
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
        finally:
            con.execute(f"DETACH {WORK}")
    summary = run_row(wh, run_id)
    summary["n_cofiring_pairs"] = n_cofiring
    return summary


def correlate_corpora(wh: Warehouse, sae_a: str, sae_b: str, corpora: Sequence[str] | None = None, **options) -> list[dict]:
    """`correlate` on several corpora (default: every corpus both SAEs were ingested on); all inputs
    are checked before the first run is computed."""
    # with none shared, [None] lets the single-corpus checks say what is missing (an SAE, a partition)
    corpora = list(corpora or Database(wh).partitions.shared_corpora(sae_a, sae_b) or [None])
    for corpus in corpora:
        _check_inputs(wh, sae_a, sae_b, corpus, options.get("stat", "all_tokens"), options.get("r_floor", 0.2))
    return [correlate(wh, sae_a, sae_b, corpus=corpus, **options) for corpus in corpora]


def run_row(wh: Warehouse, run_id: int) -> dict:
    """The correlation_runs row of `run_id` as a dict."""
    rows = Database(wh).correlations.rows_where("id = ?", [run_id])
    if not rows:
        raise FeatstoreError(f"no correlation run {run_id}; list them with `SELECT * FROM correlation_runs`")
    return rows[0]


def persistence_summary(wh: Warehouse, threshold: float = 0.8, stat: str = "all_tokens", method: str | None = None,
                        policy: str = "best") -> pa.Table:
    """Per lineage edge and corpus: features persisting, disappearing and emerging at `threshold`, beside the seed floors.

    `method` (default: the statistic) and `policy` choose the match (sql/persistence/persistence.sql).
    """
    get_statistic(stat)
    if not -1.0 <= threshold <= 1.0:
        raise FeatstoreError(f"the threshold must be a score between -1 and 1 (got {threshold})")
    return wh.query("SELECT * FROM persistence_summary(threshold := ?, stat := ?, method := ?, policy := ?)",
                    [threshold, stat, method, policy])


# -- checks --------------------------------------------------------------------------------------


def _check_inputs(wh: Warehouse, sae_a: str, sae_b: str, corpus: str | None, stat: str, r_floor: float) -> dict:
    """Everything that can be refused before any work: names, statistic, floor, tokenizers, partitions."""
    statistic = get_statistic(stat)
    if not -1.0 <= r_floor <= 1.0:
        raise FeatstoreError(f"the floor must be a correlation between -1 and 1 (got {r_floor})")
    if stat == "all_tokens" and r_floor <= 0:
        raise FeatstoreError(
            f"all_tokens needs --floor > 0 (got {r_floor}): pairs that never co-fire (r = -u_a*u_b <= 0) are not "
            "enumerated, so a floor <= 0 could not store every pair above it"
        )
    db = Database(wh)
    with db.reading() as con:  # one connection for every read: opening one costs ~50 ms
        saes = [db.saes.get(sae, con=con) for sae in (sae_a, sae_b)]
        corpus = corpus if corpus is not None else _shared_corpus(db, sae_a, sae_b, con)
        row = db.corpora.rows_where("name = ?", [corpus], select="tokenizer, n_tokens, tok_start", con=con)
        if not row:
            raise FeatstoreError(f"unknown corpus {corpus!r}; add it with `featstore corpus add`")
        corpus_tokenizer, n_tokens, tok_start = row[0].values()
        partitions = {r["sae"]: r["n_tokens"] for r in db.partitions.rows_where(
            "corpus = ? AND sae IN (?, ?)", [corpus, sae_a, sae_b], select="sae, n_tokens", con=con)}
        has_tokens = not statistic.needs_token_rows or db.corpora.has_tokens(corpus, con=con)
        models = [db.models.get(sae["model"], con=con) for sae in saes]
    if models[0]["tokenizer"] != models[1]["tokenizer"]:
        raise FeatstoreError(
            f"SAEs {sae_a!r} and {sae_b!r} belong to models with different tokenizers; only models sharing a tokenizer can be compared"
        )
    check_tokenizer({"name": corpus, "tokenizer": corpus_tokenizer}, models[0])
    for sae in (sae_a, sae_b):
        if sae not in partitions:
            raise FeatstoreError(
                f"no activations for SAE {sae!r} on corpus {corpus!r}; run `featstore ingest` or `featstore import-activations` first"
            )
        if partitions[sae] != n_tokens:
            raise FeatstoreError(
                f"activations of SAE {sae!r} cover {partitions[sae]} tokens but corpus {corpus!r} has {n_tokens}; ingest it again"
            )
    if not has_tokens:
        raise FeatstoreError(f"corpus {corpus!r} has no token rows, which {stat} needs; add it with `featstore corpus add`")
    if n_tokens < 2:
        raise FeatstoreError(f"corpus {corpus!r} has {n_tokens} token(s); a correlation needs at least 2")
    return {"sae_a": sae_a, "sae_b": sae_b, "corpus": corpus, "stat": stat, "statistic": statistic, "r_floor": r_floor,
            "n_tokens": n_tokens, "tok_start": tok_start, "d_sae_a": saes[0]["d_sae"], "d_sae_b": saes[1]["d_sae"]}


def _shared_corpus(db: Database, sae_a: str, sae_b: str, con: duckdb.DuckDBPyConnection) -> str:
    rows = db.partitions.shared_corpora(sae_a, sae_b, con=con)
    if len(rows) != 1:
        found = ", ".join(sorted(rows)) or "none"
        raise FeatstoreError(f"SAEs {sae_a!r} and {sae_b!r} share {len(rows)} corpora ({found}); name one with --corpus")
    return rows[0]


# -- computation (tables of an in-memory database attached for the run) ---------------------------

WORK = "corr_work"  # attached per run, so parallel cursors share its tables; gone when detached
RESULTS = {"pairs": f"{WORK}.pairs", "best_a": f"{WORK}.best_a", "best_b": f"{WORK}.best_b"}  # what the store step reads


def load_rows(con: duckdb.DuckDBPyConnection, run: dict, side: str, kind: str = "TABLE") -> str:
    """corr_work.raw_{side}: the (key, feature, x) rows one side's statistic joins on, checked; returns its name.

    kind VIEW checks the rows streamed from the partitions without holding them (the Spark engine's case)."""
    sae, corpus = (run[k].replace("'", "''") for k in (f"sae_{side}", "corpus"))  # a view takes no parameters
    con.execute(f"CREATE {kind} {WORK}.raw_{side} AS SELECT * FROM {run['statistic'].rows}('{sae}', '{corpus}')")
    _check_values(con, side, run)
    return f"{WORK}.raw_{side}"


def _engine(name: str, spark_master: str | None):
    """(name, compute step) of engine `name`; the step is a context manager (con, run, progress) ->
    (result relations, co-firing pairs)."""
    if name == "auto":
        import torch

        name = "torch" if torch.cuda.is_available() else "sql"
    if name == "sql":
        return name, _sql_engine
    if name == "torch":
        from featstore.engines.torch import compute

        return name, compute
    if name == "numba":
        from featstore.engines.numba import compute

        return name, compute
    if name == "spark":
        from featstore.engines.spark import engine

        return name, engine(spark_master)
    raise FeatstoreError(f"unknown engine {name!r}; use one of {', '.join(ENGINES)}")


@contextmanager
def _sql_engine(con: duckdb.DuckDBPyConnection, run: dict, progress: bool | None):
    yield RESULTS, _compute(con, run, progress)


def _compute(con: duckdb.DuckDBPyConnection, run: dict, progress: bool | None) -> int:
    """Fill corr_work.pairs, corr_work.best_a and corr_work.best_b; returns the number of co-firing pairs."""
    statistic: Statistic = run["statistic"]
    for side in "ab":
        load_rows(con, run, side)
        con.execute(f"CREATE TABLE {WORK}.stats_{side} AS SELECT * FROM corr_feature_stats('{WORK}.raw_{side}', ?)",
                    [run["n_tokens"]])
        normalised = f"corr_normalised('{WORK}.raw_{side}', '{WORK}.stats_{side}')"
        rows = normalised if statistic.implicit_zeros else f"{WORK}.raw_{side}"
        # side a is read one feature range at a time: sorted, each range scans only its row groups
        order = "ORDER BY feature" if side == "a" else ""
        con.execute(f"CREATE TABLE {WORK}.rows_{side} AS SELECT * FROM {rows} {order}")
        con.execute(f"DROP TABLE {WORK}.raw_{side}")
    con.execute(f"CREATE TABLE {WORK}.lists_b AS SELECT * FROM corr_key_lists('{WORK}.rows_b')")
    blocks = con.execute(f"SELECT block, lo, hi, pairs FROM corr_blocks('{WORK}.rows_a', '{WORK}.lists_b', ?) ORDER BY pairs DESC",
                         [PAIRS_PER_BLOCK]).fetchall()
    con.execute(f"CREATE TABLE {WORK}.found (kind VARCHAR, feature UINTEGER, match UINTEGER, r DOUBLE, mask UBIGINT, n BIGINT)")
    with tqdm(total=sum(b[3] for b in blocks), unit="pair", unit_scale=True, desc=f"correlate {run['stat']}",
              disable=None if progress is None else not progress) as bar:
        _run_blocks(con, blocks, run, bar)
    run_query(con, "correlation/pairs")
    for side in "ab":
        con.execute(f"CREATE TABLE {WORK}.partial_{side} AS SELECT feature, match, r, mask FROM {WORK}.found WHERE kind = ?", [side])
    for side, other in (("a", "b"), ("b", "a")):
        _best_matches(con, side, other, run)
    return con.execute(f"SELECT coalesce(sum(n), 0) FROM {WORK}.found WHERE kind = 'a'").fetchone()[0]


def _run_blocks(con: duckdb.DuckDBPyConnection, blocks: list[tuple], run: dict, bar: tqdm) -> None:
    """Aggregate the feature-range blocks on all cores, one single-threaded query per core.

    A single-threaded GROUP BY needs no partitioned hash table (measured ~30% less CPU than one
    query spread over the cores); the blocks are independent, so per-core cursors run them side by side.
    """
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    cursors = [con.cursor() for _ in range(threads)]

    def worker(i: int) -> None:
        for _, lo, hi, pairs in blocks[i::threads]:  # blocks come largest first: dealt round-robin
            _aggregate_block(cursors[i], f"{WORK}.block_a_{i}", lo, hi, run)
            bar.update(pairs)

    pool = ThreadPoolExecutor(threads)
    try:
        list(pool.map(worker, range(threads)))
    except BaseException:  # Ctrl-C or a failed block: stop the other blocks' queries now, not when they end
        for cur in cursors:
            cur.interrupt()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for cur in cursors:
            cur.close()
        con.execute(f"SET threads = {threads}")


def _aggregate_block(cur: duckdb.DuckDBPyConnection, block_a: str, lo: int, hi: int, run: dict) -> None:
    """Pairs of one block of side-a features, summarised into corr_work.found within the one query.

    The block's rows go to a table of their own first: with its true size known, DuckDB builds the
    join's hash table on the block rather than on side b (measured ~20% less CPU per pair).
    """
    cur.execute(f"CREATE OR REPLACE TABLE {block_a} AS SELECT * FROM {WORK}.rows_a WHERE feature BETWEEN ? AND ?", [lo, hi])
    run_query(cur, run["statistic"].kernel, block_a=block_a, r_floor=run["r_floor"], mask_bits=MASK_BITS,
              min_n=run["min_n"])


def _check_values(con: duckdb.DuckDBPyConnection, side: str, run: dict) -> None:
    """Refuse activations that would silently corrupt the statistics (implicit zeros need every tok in the corpus)."""
    bad, top_feature, outside = run_query(
        con, "correlation/check_values", side=side, by_tok=run["statistic"].keyed_by_tok,
        lo=run["tok_start"], hi=run["tok_start"] + run["n_tokens"],
    ).fetchone()
    sae = run[f"sae_{side}"]
    if bad:
        raise FeatstoreError(f"activations of SAE {sae!r} on {run['corpus']!r} hold {bad} non-finite or non-positive values; re-ingest them")
    if outside:
        raise FeatstoreError(f"{outside} activations of SAE {sae!r} lie outside the tokens of corpus {run['corpus']!r}; re-ingest them")
    if top_feature is not None and top_feature >= run[f"d_sae_{side}"]:
        raise FeatstoreError(f"activations of SAE {sae!r} name feature {top_feature}, beyond its d_sae {run[f'd_sae_{side}']}")


def _best_matches(con: duckdb.DuckDBPyConnection, side: str, other: str, run: dict, method: str = "best_match") -> None:
    """corr_work.best_{side}: every feature of one side with its best match, co-firing or not."""
    gaps = f"{WORK}.gaps_{side}"
    if run["statistic"].implicit_zeros:
        con.execute(f"CREATE TABLE {gaps} AS SELECT * FROM corr_gaps('{WORK}.stats_{side}', '{WORK}.partial_{side}')")
        con.execute(f"CREATE OR REPLACE TABLE {WORK}.saturated AS SELECT feature FROM {gaps} WHERE gap_rank > ?", [MASK_BITS])
        if con.execute(f"SELECT count(*) FROM {WORK}.saturated").fetchone()[0]:
            run_query(con, "correlation/gap_search", side=side, other=other)
    else:
        con.execute(f"CREATE TABLE {gaps} (feature UINTEGER, gap_rank BIGINT)")
    run_query(con, MATCH_METHODS[method].query, side=side, other=other, n_features=run[f"d_sae_{side}"])
