"""Pearson correlation between every feature of two SAEs over the same tokens: one stored run.

`correlate` checks the inputs (both SAEs ingested on the corpus, one tokenizer, enough tokens),
builds the run's parameters, lets the chosen engine (`featstore.correlation.engines`: sql, numba,
torch, spark) fill its result relations in a work database attached for the run, and stores the
pairs with r >= the floor and every feature's best match in one transaction, replacing an earlier
run of the same (sae_a, sae_b, corpus, stat). The statistics are registered in
`featstore.correlation.statistics` (see docs/correlation.md):

- all_tokens: r over every token occurrence of the corpus, implicit zeros counted exactly;
- cofiring: r over the occurrences where both features fire;
- token_type_mean: r over per-token-type mean activations, as the paper's released code computes it.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from featstore.correlation.engines import get_engine
from featstore.correlation.inputs import WORK
from featstore.correlation.statistics import get_statistic
from featstore.errors import FeatstoreError
from featstore.text.slices import check_tokenizer, slices_to_compute
from featstore.warehouse import Warehouse

# cofiring: r over fewer shared tokens is noise (over 2 it is always ±1); token_type_mean keeps pandas' 2
MIN_COFIRING = 10
R_FLOOR = 0.2  # pairs stored per run: every pair with r >= this


def correlate(
    wh: Warehouse,
    sae_a: str,
    sae_b: str,
    *,
    corpus: str | None = None,
    stat: str = "all_tokens",
    r_floor: float = R_FLOOR,
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
    (featstore.warehouse.tables's correlations.store) commits.
    `threads` caps the cores used (default: all). Returns the run's catalog row.
    """
    started = time.perf_counter()
    check_options(stat, r_floor, min_cofiring, engine, threads, spark_master)
    run = _check_inputs(wh, sae_a, sae_b, corpus, stat, r_floor)
    run["min_n"] = min_cofiring if stat == "cofiring" else 2
    engine, compute = get_engine(engine, spark_master)
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
                    run_id = wh.correlations.store(
                        con, key, r_floor=run["r_floor"], n_tokens=run["n_tokens"], seconds=seconds,
                        min_cofiring=min_cofiring if stat == "cofiring" else None, engine=engine,
                        pairs=results["pairs"], best={side: results[f"best_{side}"] for side in "ab"})
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                wh.commit(con)
        finally:
            con.execute(f"DETACH {WORK}")
    summary = run_row(wh, run_id)
    summary["n_cofiring_pairs"] = n_cofiring
    return summary


def correlate_corpora(wh: Warehouse, sae_a: str, sae_b: str, corpora: Sequence[str], **options) -> list[dict]:
    """`correlate` on each of `corpora`; the options and every corpus's inputs are checked before the first
    run is computed (with no corpora, the option checks alone run)."""
    check_options(**{k: options[k] for k in OPTION_NAMES if k in options})
    for corpus in corpora:
        _check_inputs(wh, sae_a, sae_b, corpus, options.get("stat", "all_tokens"), options.get("r_floor", R_FLOOR))
    return [correlate(wh, sae_a, sae_b, corpus=corpus, **options) for corpus in corpora]


def corpora_to_correlate(wh: Warehouse, sae_a: str, sae_b: str, corpora: Sequence[str] = (), *, stat: str = "all_tokens",
                         r_floor: float = R_FLOOR, min_cofiring: int = MIN_COFIRING, every: bool = False,
                         ) -> tuple[list[str], str | None]:
    """The corpus slices `featstore correlate` computes, and a line naming those it skips (None: none skipped).

    Named `corpora` are computed as named. Otherwise every slice both SAEs have activations on that holds
    no run of (sae_a, sae_b, stat) with this floor and min_cofiring made after both partitions were
    written, or with `every` all of them.
    """
    if corpora:
        return list(corpora), None
    check_options(stat, r_floor, min_cofiring)
    for sae in (sae_a, sae_b):
        wh.saes.get(sae)
    stored = wh.correlations.stored_on_shared(sae_a, sae_b, stat, r_floor, min_cofiring if stat == "cofiring" else None)
    if not stored:
        raise FeatstoreError(f"SAEs {sae_a!r} and {sae_b!r} have activations on no common corpus slice; "
                             "ingest both on one with `featstore ingest`")
    return slices_to_compute(stored, every, f"{sae_a} x {sae_b} has its {stat} run at floor {r_floor}", "computes them again")


def run_row(wh: Warehouse, run_id: int) -> dict:
    """The correlation_runs row of `run_id` as a dict."""
    rows = wh.correlations.rows_where("id = ?", [run_id])
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
    return wh.named("correlation/persistence_summary", threshold=threshold, stat=stat, method=method, policy=policy)


# -- checks --------------------------------------------------------------------------------------


def check_options(stat: str = "all_tokens", r_floor: float = R_FLOOR, min_cofiring: int = MIN_COFIRING,
                  engine: str = "auto", threads: int | None = None, spark_master: str | None = None) -> None:
    """Refuse the options no run can use: statistic, floor, min_cofiring, threads, a Spark master without Spark."""
    get_statistic(stat)
    if not -1.0 <= r_floor <= 1.0:
        raise FeatstoreError(f"the floor must be a correlation between -1 and 1 (got {r_floor})")
    if stat == "all_tokens" and r_floor <= 0:
        raise FeatstoreError(
            f"all_tokens needs --floor > 0 (got {r_floor}): pairs that never co-fire (r = -u_a*u_b <= 0) are not "
            "enumerated, so a floor <= 0 could not store every pair above it"
        )
    if min_cofiring < 2:
        raise FeatstoreError(f"--min-cofiring must be at least 2 (got {min_cofiring}); over 2 tokens r is always ±1")
    if threads is not None and threads < 1:
        raise FeatstoreError(f"--threads must be at least 1 (got {threads})")
    if spark_master is not None and engine != "spark":
        raise FeatstoreError(f"--spark-master is for --engine spark (this run uses --engine {engine}); add --engine spark or drop it")


OPTION_NAMES = tuple(inspect.signature(check_options).parameters)


def _check_inputs(wh: Warehouse, sae_a: str, sae_b: str, corpus: str | None, stat: str, r_floor: float) -> dict:
    """Everything about the data that can be refused before any work (after `check_options`): names, tokenizers,
    partitions."""
    statistic = get_statistic(stat)
    with wh.reading() as con:  # one connection for every read: opening one costs ~50 ms
        saes = [wh.saes.get(sae, con=con) for sae in (sae_a, sae_b)]
        corpus = corpus if corpus is not None else _shared_corpus(wh, sae_a, sae_b, con)
        row = wh.corpora.rows_where("name = ?", [corpus], select="tokenizer, n_tokens, tok_start", con=con)
        if not row:
            raise FeatstoreError(f"unknown corpus {corpus!r}; add it with `featstore corpus add`")
        corpus_tokenizer, n_tokens, tok_start = row[0].values()
        partitions = {r["sae"]: r["n_tokens"] for r in wh.partitions.rows_where(
            "corpus = ? AND sae IN (?, ?)", [corpus, sae_a, sae_b], select="sae, n_tokens", con=con)}
        has_tokens = not statistic.needs_token_rows or wh.corpora.has_tokens(corpus, con=con)
        models = [wh.models.get(sae["model"], con=con) for sae in saes]
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
    return {"warehouse": wh,  # engines that read the partitions themselves (Spark) need its paths
            "sae_a": sae_a, "sae_b": sae_b, "corpus": corpus, "stat": stat, "statistic": statistic, "r_floor": r_floor,
            "n_tokens": n_tokens, "tok_start": tok_start, "d_sae_a": saes[0]["d_sae"], "d_sae_b": saes[1]["d_sae"]}


def _shared_corpus(wh: Warehouse, sae_a: str, sae_b: str, con: duckdb.DuckDBPyConnection) -> str:
    rows = wh.partitions.shared_corpora(sae_a, sae_b, con=con)
    if len(rows) != 1:
        found = ", ".join(sorted(rows)) or "none"
        raise FeatstoreError(f"SAEs {sae_a!r} and {sae_b!r} share {len(rows)} corpora ({found}); name one with --corpus")
    return rows[0]
