"""The Spark SQL correlation engine: the same three statistics, computed by Spark on the warehouse's Parquet.

Spark reads the activation partitions themselves, plus the small catalog rows it needs (the corpus's
tokens, for token_type_mean) exported as Parquet into a staging folder of the warehouse; the pair
aggregation runs in Spark SQL (sql/queries/spark/, one statement per step, the Spark versions of the
DuckDB macros sql/22x-23x). The pairs above the floor and both sides' best matches are written as
Parquet into the staging folder, which featstore.correlation.correlate commits into the DuckDB catalog exactly as
a SQL-engine run; the folder is removed afterwards. The inputs are checked in DuckDB first, with the
SQL engine's own check, streamed over the partitions. Each statistic of featstore.correlation.statistics has here
a Spark file named as its row macro (corr_occurrences, corr_type_means). Everything featstore commits is written by
one Spark job into one Parquet dataset (column kind: pairs, best_a, best_b, count).

`--spark-master` takes any Spark master URL (default local[*]); a SparkSession already running in
the process is used as it is. On a local master the shuffles get two partitions per core instead of
Spark's 200: at 10k tokens x 1,024 features that made local[1] 5.7 times faster.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import duckdb

from featstore.correlation.inputs import load_rows
from featstore.warehouse import Warehouse
from featstore.warehouse.queries import run as run_query
from featstore.warehouse.queries import sql

LOW_RANKS = 64  # partners sorted per feature to find its best never-co-firing one (all of them when saturated)
DRIVER_MEMORY = "2g"  # local mode runs in the driver: enough for the benchmark's 82M co-firing row pairs


def session(master: str | None = None):
    """The running SparkSession, or a new one on `master` (default local[*])."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = master or "local[*]"
    builder = (SparkSession.builder.master(master).appName("featstore")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.memory", DRIVER_MEMORY))
    cores = local_cores(master)
    if cores is not None:  # Spark's 200 shuffle partitions are 200 tasks per stage for one or two cores
        builder = builder.config("spark.sql.shuffle.partitions", str(2 * cores))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def local_cores(master: str) -> int | None:
    """The cores a local master runs on (local, local[N], local[*], local[N,F]); None for a cluster."""
    found = re.fullmatch(r"local(?:\[(\*|\d+)(?:,\d+)?\])?", master)
    if found is None:
        return None
    return (os.cpu_count() or 1) if found.group(1) == "*" else int(found.group(1) or 1)


def query(spark, name: str, **args):
    """Run sql/queries/spark/<name>.sql with named parameters (:name) on the session's temp views."""
    return spark.sql(sql(f"spark/{name}"), args=args or None)


def engine(master: str | None):
    """The engine's compute step (see featstore.correlation.engines) on a session of `master`."""

    @contextmanager
    def compute(con: duckdb.DuckDBPyConnection, run: dict, progress: bool | None):
        staging = run["warehouse"].root / "staging" / f"spark-{uuid.uuid4().hex[:12]}"
        staging.mkdir(parents=True)
        try:
            yield _correlate(session(master), con, run, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    return compute


def partition_files(wh: Warehouse, con: duckdb.DuckDBPyConnection, sae: str, corpus: str) -> list[str]:
    """The committed Parquet files of one (SAE, corpus) partition, read through the run's connection."""
    return [str(file) for file in wh.committed_files(con, "sae = ? AND corpus = ?", [sae, corpus])]


def _correlate(spark, con: duckdb.DuckDBPyConnection, run: dict, staging: Path) -> tuple[dict[str, str], int]:
    statistic, corpus = run["statistic"], run["corpus"]
    for side in "ab":  # streamed over the partitions by a view: nothing held in DuckDB
        load_rows(con, run, side, kind="VIEW")
    if statistic.needs_token_rows:
        run_query(con, "correlation/spark_tokens", corpus=corpus, path=str(staging / "tokens.parquet"))
        spark.read.parquet(str(staging / "tokens.parquet")).createOrReplaceTempView("tokens")
    for side in "ab":
        spark.read.parquet(*partition_files(run["warehouse"], con, run[f"sae_{side}"], corpus)).createOrReplaceTempView("acts")
        raw = query(spark, statistic.rows)  # the Spark version of the statistic's row macro, same name
        raw.createOrReplaceTempView(f"raw_{side}")
        if statistic.implicit_zeros:
            raw.createOrReplaceTempView("raw")
            stats, _ = _materialised(query(spark, "corr_feature_stats", n_tokens=run["n_tokens"]))
            stats.createOrReplaceTempView(f"stats_{side}")
            stats.createOrReplaceTempView("stats")
            query(spark, "corr_normalised").createOrReplaceTempView(f"rows_{side}")
        else:
            spark.createDataFrame([], "feature BIGINT, u DOUBLE, rank INT").createOrReplaceTempView(f"stats_{side}")
    pairs, n_cofiring = _materialised(query(spark, "corr_pairs_all_tokens") if statistic.implicit_zeros
                                      else query(spark, "corr_pairs_moments", min_n=run["min_n"]))
    pairs.createOrReplaceTempView("pairs_all")
    results = [query(spark, "result_pairs", floor=run["r_floor"])]
    for side, other in (("a", "b"), ("b", "a")):
        results.append(_best_matches(spark, run, side, other).selectExpr(f"'best_{side}' AS kind", "*"))
    combined = results[0]
    for frame in results[1:]:
        combined = combined.unionByName(frame, allowMissingColumns=True)
    combined.write.parquet(str(staging / "results"))  # one Spark job for everything featstore commits
    pairs.unpersist()
    files = f"read_parquet('{staging / 'results'}/*.parquet')"
    relations = {"pairs": f"(SELECT feature AS feature_a, match AS feature_b, r FROM {files} WHERE kind = 'pairs')"}
    for side in "ab":
        relations[f"best_{side}"] = f"(SELECT feature, match, r FROM {files} WHERE kind = 'best_{side}')"
    return relations, n_cofiring


def _materialised(frame) -> tuple:
    """`frame` cached and computed now, and its row count: a lazily cached frame that several branches
    of the one results job read would be computed by each of them at once (Spark runs independent
    stages side by side: 12 copies of the pair aggregation at 30k tokens × 2,048 features)."""
    frame = frame.cache()
    return frame, frame.count()


def _best_matches(spark, run: dict, side: str, other: str):
    """Every feature of one side with its best match (corr_gaps.sql, corr_best_matches.sql)."""
    spark.table("pairs_all").selectExpr(f"feature_{side} AS feature", f"feature_{other} AS partner", "r",
                                        f"rank_{other} AS partner_rank").createOrReplaceTempView("side_pairs")
    spark.table(f"stats_{side}").createOrReplaceTempView("stats_self")
    spark.table(f"stats_{other}").createOrReplaceTempView("stats_other")
    spark.range(run[f"d_sae_{side}"]).createOrReplaceTempView("features")
    if run["statistic"].implicit_zeros:
        query(spark, "corr_gaps", low_ranks=LOW_RANKS).createOrReplaceTempView("gaps")
    else:
        spark.createDataFrame([], "feature BIGINT, gap_rank INT").createOrReplaceTempView("gaps")
    return query(spark, "corr_best_matches")


def persistence_summary(spark, layout: str | Path, threshold: float = 0.8, stat: str = "all_tokens"):
    """The persistence_summary view's numbers computed by Spark from an engine layout (featstore.export.tables.export_layout)."""
    for table in ("saes", "lineage", "correlation_runs", "best_matches"):
        spark.read.parquet(str(Path(layout) / f"{table}.parquet")).createOrReplaceTempView(table)
    fired_features(spark, Path(layout)).createOrReplaceTempView("fired")
    return query(spark, "persistence_summary", threshold=float(threshold), stat=stat)


def fired_features(spark, layout: Path):
    """(sae, corpus, feature) of every feature that fires, which tells a constant feature (no r) from a dead
    one; read partition by partition, so no folder name is taken for a number."""
    from pyspark.sql import functions as F

    fired = spark.createDataFrame([], "sae STRING, corpus STRING, feature BIGINT")
    for p in spark.read.parquet(str(layout / "activation_partitions.parquet")).select("sae", "corpus", "path").collect():
        features = spark.read.parquet(str(layout / p.path)).select("feature").distinct()
        fired = fired.unionByName(features.select(F.lit(p.sae).alias("sae"), F.lit(p.corpus).alias("corpus"), "feature"))
    return fired
