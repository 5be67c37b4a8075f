"""Movable warehouses, concurrent writers, crashes, a read-only `featstore sql`, read-only
and damaged warehouses, disk full, Ctrl-C. One real warehouse (tiny model, two SAEs, two corpora,
ingested and correlated) is built once per module; each test works on its own `cp -a` copy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import (
    FAULT_RUNNER,
    REPO,
    FakeCatalog,
    error_line,
    invoke,
    run_cli,
    tiny_texts,
    tree_hashes,
    write_sae_folder,
)

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse

COUNTS = "SELECT sae, corpus, count(*) AS n, round(sum(act), 3) AS total FROM activations GROUP BY ALL ORDER BY ALL"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_model_dir, tiny_tokenizer_dir):
    """corpora c1, c2; model m; SAEs s1, s2 of m; s1 and s2 ingested on c1, s1 x s2 correlated on c1."""
    from featstore.activations.ingest import ingest
    from featstore.correlation.correlate import correlate
    from featstore.models.catalog import register_model
    from featstore.saes.catalog import add_sae_folder
    from featstore.text.slices import add_corpus

    root = tmp_path_factory.mktemp("prepared")
    for name, seed in (("c1", 1), ("c2", 2)):
        (root / f"{name}.txt").write_text("\n\n".join(tiny_texts(12, seed=seed)))
    wh = Warehouse(root / "wh")
    for name in ("c1", "c2"):
        add_corpus(wh, name, str(root / f"{name}.txt"), tiny_tokenizer_dir)
    shutil.copytree(tiny_model_dir, wh.root / "models" / "m")
    register_model(wh, "m", wh.root / "models" / "m", kind="base")
    for sae in ("s1", "s2"):
        folder = write_sae_folder(wh.root / "saes" / sae)
        add_sae_folder(wh, sae, "m", folder, is_primary=sae == "s1")
        ingest(wh, "m", corpus="c1", sae_id=sae, device="cpu", progress=False)
    correlate(wh, "s1", "s2", corpus="c1", progress=False)
    acts = root / "acts.parquet"
    pq.write_table(pa.table({"tok": pa.array([0, 1, 5], pa.uint32()), "feature": pa.array([0, 3, 15], pa.uint32()),
                             "act": pa.array([1.0, 0.5, 2.0], pa.float32())}), acts)
    return {"wh": wh, "acts": acts}


@pytest.fixture
def wh(prepared, tmp_path) -> Warehouse:
    """A private `cp -a` copy of the prepared warehouse, relocated (its activations view rebuilt there)."""
    subprocess.run(["cp", "-a", str(prepared["wh"].root), str(tmp_path / "wh")], check=True)
    copy = Warehouse(tmp_path / "wh")
    copy.relocate()
    return copy


def featstore_process(wh: Warehouse, *args: str, fault: tuple | None = None, **popen) -> subprocess.Popen:
    """`featstore ARGS` in its own process, optionally with a fault (target, action, when, n) injected."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    prefix = [str(FAULT_RUNNER), *map(str, fault), "--"] if fault else ["-c", "from cli import main; main()"]
    return subprocess.Popen([sys.executable, *prefix, "--warehouse", str(wh.root), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def run_featstore(wh: Warehouse, *args: str, fault: tuple | None = None, timeout: float = 300):
    proc = featstore_process(wh, *args, fault=fault)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def shell_counts(shell: str, wh: Warehouse, cwd: Path) -> list:
    """The DuckDB shell's view, from another directory; retried while a writer commits (DuckDB's file lock)."""
    for _ in range(50):
        done = subprocess.run([shell, "-readonly", "-json", str(wh.db_path), "-c", COUNTS], cwd=cwd,
                              capture_output=True, text=True)
        if "lock" not in done.stderr:
            break
        time.sleep(0.2)
    assert done.returncode == 0, done.stderr
    return [tuple(r.values()) for r in json.loads(done.stdout or "[]")]


def polars_counts(wh: Warehouse) -> list:
    """The README's Polars pattern: the committed files, hive columns from their folders."""
    files = wh.activation_files()
    if not files:
        return []
    frame = (pl.scan_parquet(files, hive_partitioning=True).group_by("sae", "corpus")
             .agg(pl.len().alias("n"), pl.col("act").sum().round(3)).sort("sae", "corpus").collect())
    return [tuple(r) for r in frame.iter_rows()]


def visible(wh: Warehouse, shell: str) -> dict:
    """What every documented reader sees: `featstore sql`, Warehouse.query, the DuckDB shell, Polars."""
    sql = [tuple(r.values()) for r in wh.sql(COUNTS).to_pylist()]
    assert [tuple(r.values()) for r in wh.query(COUNTS).to_pylist()] == sql
    assert shell_counts(shell, wh, cwd=Path("/")) == sql
    assert [(s, c, n) for s, c, n, _ in polars_counts(wh)] == [(s, c, n) for s, c, n, _ in sql]
    return {"counts": sql}


def partition_rows(wh: Warehouse, sae: str, corpus: str) -> list:
    return wh.query("SELECT tok, feature, act FROM activations WHERE sae = ? AND corpus = ? ORDER BY ALL",
                    [sae, corpus]).to_pylist()


def correlation_rows(wh: Warehouse) -> list:
    return wh.query("SELECT r.sae_a, r.sae_b, c.feature_a, c.feature_b, round(c.r, 5) AS r FROM correlations c "
                    "JOIN correlation_runs r ON r.id = c.run_id ORDER BY ALL").to_pylist()


# -- 1. paths relative to the warehouse: copies and moves ------------------------------------------


def test_catalog_paths_are_relative(wh):
    for table in ("models", "saes", "activation_partitions"):
        paths = wh.query(f"SELECT path FROM {table}").column("path").to_pylist()
        assert paths and all(not p.startswith("/") for p in paths), (table, paths)


def test_writes_in_a_copy_never_touch_the_original(prepared, tmp_path, duckdb_shell):
    original = prepared["wh"]
    before = tree_hashes(original.root)
    subprocess.run(["cp", "-a", str(original.root), str(tmp_path / "wh")], check=True)
    wh = Warehouse(tmp_path / "wh")
    # the DuckDB shell on the fresh copy refuses to read the original's files through the stale view
    stale = subprocess.run([duckdb_shell, "-readonly", str(wh.db_path), "-c", "SELECT count(*) FROM activations"],
                           capture_output=True, text=True)
    assert stale.returncode != 0 and "was moved or copied from" in stale.stderr and "featstore relocate" in stale.stderr
    assert wh.sql("SELECT count(*) AS n FROM activations").column("n")[0].as_py() > 0  # featstore reads the copy's
    assert run_cli(wh, "import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"])).exit_code == 0
    assert run_cli(wh, "corpus", "add", "c2", "--replace", "--source", str(tmp_path / "x.txt"),
               "--tokenizer", str(wh.root / "models" / "m")).exit_code == 1  # (a bad source changes nothing)
    (tmp_path / "x.txt").write_text("\n\n".join(tiny_texts(5, seed=9)))
    assert run_cli(wh, "corpus", "add", "c2", "--replace", "--source", str(tmp_path / "x.txt"),
               "--tokenizer", str(wh.root / "models" / "m")).exit_code == 0
    assert run_cli(wh, "sae", "add", "s2", str(wh.root / "saes" / "s2"), "--model", "m", "--replace",
               "--not-primary").exit_code == 0
    assert tree_hashes(original.root) == before
    assert original.query("SELECT count(*) AS n FROM activations").column("n")[0].as_py() > 3
    assert wh.query("SELECT count(*) AS n FROM activations").column("n")[0].as_py() == 3


def test_a_moved_warehouse_reads_and_writes(prepared, wh, tmp_path, duckdb_shell):
    expected = visible(prepared["wh"], duckdb_shell)
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    wh.root.rename(moved)
    wh = Warehouse(moved)
    before = tree_hashes(moved)
    # reads: nothing is rewritten, the activations view follows the new folder (a temporary view)
    assert [tuple(r.values()) for r in wh.sql(COUNTS).to_pylist()] == expected["counts"]
    assert run_cli(wh, "sql", "SELECT count(*) FROM feature_stats").exit_code == 0
    assert tree_hashes(moved) == before
    # the DuckDB shell fails on the stale view (the old folder's files are gone) until relocated
    stale = subprocess.run([duckdb_shell, "-readonly", str(wh.db_path), "-c", "SELECT count(*) FROM activations"],
                           capture_output=True, text=True)
    assert stale.returncode != 0 and "No files found" in stale.stderr
    result = run_cli(wh, "relocate")
    assert result.exit_code == 0, result.output
    assert visible(wh, duckdb_shell) == expected
    # writes: ingest, import, correlate, registration
    assert run_cli(wh, "ingest", "m", "--corpus", "c2", "--sae", "s1", "--device", "cpu").exit_code == 0
    assert run_cli(wh, "import-activations", "--sae", "s2", "--corpus", "c1", str(prepared["acts"])).exit_code == 0
    assert run_cli(wh, "correlate", "s1", "s2", "--corpus", "c1").exit_code == 0
    assert run_cli(wh, "sae", "add", "s3", str(moved / "saes" / "s2"), "--model", "m", "--not-primary").exit_code == 0
    assert wh.query("SELECT path FROM saes WHERE id = 's3'").column("path")[0].as_py() == "saes/s2"
    counts = dict(((s, c), n) for s, c, n, _ in visible(wh, duckdb_shell)["counts"])
    assert counts[("s2", "c1")] == 3 and counts[("s1", "c2")] > 0


def test_an_old_warehouse_with_absolute_paths_is_localised_on_open(prepared, wh, tmp_path, duckdb_shell):
    """A warehouse written by the previous version (absolute paths under the old root), copied."""
    import duckdb

    old_root = prepared["wh"].root
    con = duckdb.connect(str(wh.db_path))
    for table in ("models", "saes", "activation_partitions"):
        con.execute(f"UPDATE {table} SET path = ? || '/' || path", [str(old_root)])
    con.close()
    assert run_cli(wh, "relocate").exit_code == 0
    assert not wh.query("SELECT path FROM activation_partitions WHERE path LIKE '/%'").num_rows
    assert wh.query("SELECT path FROM models").column("path")[0].as_py() == "models/m"
    assert visible(wh, duckdb_shell)["counts"] == visible(prepared["wh"], duckdb_shell)["counts"]


# -- 2. concurrent writers, readers, kill -9 ------------------------------------------------------


def test_two_ingests_of_different_pairs_both_commit(wh, duckdb_shell):
    slow = ("featstore.activations.ingest:batch_activations", "sleep3", "before", 1)  # both are writing at once
    before = visible(wh, duckdb_shell)["counts"]
    jobs = [featstore_process(wh, "ingest", "m", "--corpus", "c2", "--sae", sae, "--device", "cpu", fault=slow)
            for sae in ("s1", "s2")]
    seen = []  # each reader on its own: they read at different moments
    while any(job.poll() is None for job in jobs):
        seen += [[tuple(r.values()) for r in wh.sql(COUNTS).to_pylist()], shell_counts(duckdb_shell, wh, Path("/")),
                 polars_counts(wh)]
        time.sleep(0.2)
    outcomes = [(job.returncode, job.stderr.read()) for job in jobs]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    after = visible(wh, duckdb_shell)["counts"]
    assert {(s, c) for s, c, _, _ in after} == {(s, c) for s, c, _, _ in before} | {("s1", "c2"), ("s2", "c2")}
    # readers saw only committed partitions: each (SAE, corpus) either absent or complete
    committed = {(s, c, n) for s, c, n, _ in before + after}
    assert all({(s, c, n) for s, c, n, _ in counts} <= committed for counts in seen), seen
    assert not list((wh.root / ".staging").iterdir())
    assert sorted(p.name for p in wh.activations_dir.rglob("*.parquet")) == sorted(p.name for p in wh.activation_files())


def test_the_same_pair_twice_one_wins_the_other_says_so(wh, tmp_path):
    go = tmp_path / "go"  # the first writer holds the pair until the second has given up
    first = featstore_process(wh, "ingest", "m", "--corpus", "c2", "--sae", "s1", "--device", "cpu",
                              fault=("featstore.activations.ingest:batch_activations", f"waitfor{go}", "before", 1))
    while not list((wh.root / ".locks").glob("*.lock")) and first.poll() is None:
        time.sleep(0.1)
    second = featstore_process(wh, "ingest", "m", "--corpus", "c2", "--sae", "s1", "--device", "cpu")
    second.wait()
    go.touch()
    outcomes = sorted((job.wait(), job.stderr.read()) for job in (first, second))
    assert outcomes[0][0] == 0 and outcomes[1][0] == 1, outcomes
    assert "another featstore process is writing the activations of SAE 's1' on corpus 'c2'" in outcomes[1][1]
    assert len([line for line in outcomes[1][1].splitlines() if line.startswith("error:")]) == 1
    assert len(list(wh.partition_dir("s1", "c2").iterdir())) == 1
    assert wh.query("SELECT count(*) AS n FROM activation_partitions WHERE sae = 's1' AND corpus = 'c2'").column("n")[0].as_py() == 1


def test_sweep_removes_only_dead_writers_staged_files(wh):
    import fcntl

    staging = wh.root / ".staging"
    staging.mkdir(exist_ok=True)
    dead, alive, young = (staging / f"part-{n}.parquet.tmp" for n in ("dead", "alive", "young"))
    # sort_partition's twins: of a dead writer, of a live one, and one whose staged file is gone
    twins = [staging / f"part-{n}.parquet.tmp.sorted" for n in ("dead", "alive", "orphan")]
    for path in (dead, alive, young, *twins):
        path.write_bytes(b"x")
    for path in (dead, alive, *twins):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    with open(alive, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        Warehouse._sweep_staging(staging)
    assert not dead.exists() and alive.exists() and young.exists()
    assert [p.exists() for p in twins] == [False, True, False]


INGEST = ("ingest", "m", "--corpus", "c1", "--sae", "s1", "--device", "cpu")
SHARD = (*INGEST, "--shard", "0/1")  # the whole corpus as one shard: its part is published through publish_parts
CORRELATE = ("correlate", "s1", "s2", "--corpus", "c1", "--floor", "0.1")
KILL_POINTS = {  # name: (command, target, when, n)
    "ingest: computing": (INGEST, "featstore.activations.ingest:batch_activations", "after", 1),
    "ingest: staged file written": (INGEST, "featstore.warehouse.storage:write_sorted", "after", 1),
    "ingest: renamed, not committed": (INGEST, "featstore.warehouse.core:os.replace", "after", 1),
    "ingest: inside the commit": (INGEST, "featstore.warehouse.core:Warehouse._refresh_activations_view", "after", 1),
    "ingest: committed, old file kept": (INGEST, "featstore.warehouse.core:Warehouse._sweep_orphans", "before", 1),
    "shard: part written, not published": (SHARD, "featstore.activations.shards:publish_if_complete", "before", 1),
    "shard: part linked, not committed": (SHARD, "featstore.warehouse.core:link_or_copy", "after", 1),
    "shard: inside the commit": (SHARD, "featstore.warehouse.core:Warehouse._refresh_activations_view", "after", 1),
    "import: validating": (None, "featstore.activations.importer:_validate", "before", 1),
    "import: staged file written": (None, "featstore.warehouse.storage:write_sorted", "after", 1),
    "import: renamed, not committed": (None, "featstore.warehouse.core:os.replace", "after", 1),
    "correlate: computing blocks": (CORRELATE, "featstore.correlation.engines.sql:_aggregate_block", "after", 1),
    "correlate: stored, not committed": (CORRELATE, "featstore.warehouse.tables:CorrelationRuns.store", "after", 1),
}


@pytest.fixture(scope="module")
def reference_runs(prepared, tmp_path_factory):
    """The same three commands run uninterrupted on a copy: the rows a rerun must reproduce."""
    root = tmp_path_factory.mktemp("reference") / "wh"
    shutil.copytree(prepared["wh"].root, root)
    wh = Warehouse(root)
    for args in (INGEST, CORRELATE, ("import-activations", "--sae", "s2", "--corpus", "c1", str(prepared["acts"]))):
        assert run_cli(wh, *args).exit_code == 0
    return {"s1": partition_rows(wh, "s1", "c1"), "s2": partition_rows(wh, "s2", "c1"), "corr": correlation_rows(wh)}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_leaves_nothing_visible_and_a_rerun_matches(point, prepared, wh, reference_runs, duckdb_shell):
    command, target, when, n = KILL_POINTS[point]
    command = command or ("import-activations", "--sae", "s2", "--corpus", "c1", str(prepared["acts"]))
    before = visible(wh, duckdb_shell)
    before_corr, before_files = correlation_rows(wh), wh.activation_files()
    code, _, err = run_featstore(wh, *command, fault=(target, "kill", when, n))
    assert code == -9, err
    now = visible(wh, duckdb_shell)
    if point.startswith("ingest: committed"):  # the commit happened: the new file (same rows) is what readers see
        assert now == before and wh.activation_files() != before_files
    else:
        assert now == before
        assert correlation_rows(wh) == before_corr
    result = run_cli(wh, *command)
    assert result.exit_code == 0, result.output
    key = "corr" if command[0] == "correlate" else "s1" if "s1" in command else "s2"
    got = correlation_rows(wh) if key == "corr" else partition_rows(wh, key, "c1")
    assert got == reference_runs[key]
    assert sorted(p.name for p in wh.activations_dir.rglob("*.parquet")) == sorted(p.name for p in wh.activation_files())
    assert not [p for p in (wh.root / ".staging").iterdir() if p.stat().st_mtime < time.time() - 120]


# -- 9. Ctrl-C -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["featstore.correlation.engines.sql:_aggregate_block", "featstore.warehouse.tables:CorrelationRuns.store"])
def test_ctrl_c_during_correlate_keeps_the_previous_run(wh, target):
    before = correlation_rows(wh)
    runs = wh.query("SELECT * FROM correlation_runs").to_pylist()
    code, out, err = run_featstore(wh, *CORRELATE, fault=(target, "sigint", "after", 1))
    assert code == 130, err
    assert err.strip().splitlines() == ["error: interrupted: nothing of this command was committed, earlier results are intact"]
    assert correlation_rows(wh) == before and wh.query("SELECT * FROM correlation_runs").to_pylist() == runs


# -- 3. a read-only `featstore sql` ------------------------------------------------------------------


def test_sql_cannot_write_files(wh, tmp_path):
    partition = wh.activation_files()[0]
    before = tree_hashes(wh.root)
    cases = [
        "COPY (SELECT 1) TO 'x.csv'",
        f"COPY (SELECT 1 AS tok) TO '{wh.root}/evil.csv'",
        f"COPY (SELECT 1 AS tok, 2 AS feature, 3.0 AS act) TO '{partition}' (FORMAT parquet, USE_TMP_FILE false)",
        f"SELECT 1; COPY (SELECT 1) TO '{tmp_path}/y.csv'",
        f"ATTACH '{tmp_path}/new.duckdb' AS n",
        f"EXPORT DATABASE '{tmp_path}/dump'",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        "CREATE TABLE t AS SELECT 1",
    ]
    for sql in cases:
        result = run_cli(wh, "sql", sql)
        assert result.exit_code == 1, (sql, result.output)
        assert "read-only" in error_line(result)
    result = run_cli(wh, "sql", f"SELECT * FROM read_csv('{tmp_path}/outside.csv')")
    assert result.exit_code == 1 and "Permission Error" in error_line(result)
    assert run_cli(wh, "sql", f"SELECT count(*) FROM read_parquet('{partition}')").exit_code == 0  # committed files read
    assert run_cli(wh, "sql", "SELECT count(*) FROM feature_stats").exit_code == 0
    assert tree_hashes(wh.root) == before
    assert not (Path.cwd() / "x.csv").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["wh"]


def test_export_reads_through_the_sandbox(wh, tmp_path):
    assert run_cli(wh, "export", "feature_stats", "--out", str(tmp_path / "out")).exit_code == 0
    result = run_cli(wh, "export", "x' TO 'evil.csv", "--out", str(tmp_path / "out"))
    assert result.exit_code == 1 and "no table or view named" in error_line(result)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["feature_stats.parquet"]


def test_query_works_beside_other_readers_and_in_process(wh):
    import duckdb

    other = subprocess.Popen([sys.executable, "-c", f"import duckdb,time; c=duckdb.connect({str(wh.db_path)!r}, read_only=True); "
                              "print('open', flush=True); time.sleep(4)"], stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline().strip() == "open"
    started = time.monotonic()
    assert wh.query("SELECT count(*) AS n FROM models").column("n")[0].as_py() == 1
    assert time.monotonic() - started < 3  # no waiting for a lock
    notebook = duckdb.connect(str(wh.db_path), read_only=True)  # the notebook's own connection
    assert wh.query("SELECT count(*) AS n FROM saes").column("n")[0].as_py() == 2
    assert notebook.execute("SELECT count(*) FROM saes").fetchall() == [(2,)]
    notebook.close()
    other.wait()


# -- 4. a read-only warehouse ------------------------------------------------------------------------


@pytest.fixture
def read_only_mount(wh, tmp_path):
    """The warehouse copy bind-mounted read-only (needs root; skipped where mount is not allowed)."""
    target = tmp_path / "ro"
    target.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(wh.root), str(target)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot bind-mount read-only here ({done.stderr.strip()})")
    subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
    yield Warehouse(target)
    subprocess.run(["umount", str(target)], check=True)


def test_read_only_warehouse_reads_work_writes_refused(read_only_mount, wh, prepared, duckdb_shell):
    ro = read_only_mount
    before = tree_hashes(wh.root)
    for args in (["corpora"], ["models"], ["saes"], ["lineage"], ["persistence"], ["sql", "SELECT count(*) FROM activations"]):
        result = run_cli(ro, *args)
        assert result.exit_code == 0, (args, result.output)
    # featstore's readers follow the new folder; the DuckDB shell needs `featstore relocate`, which a
    # read-only copy cannot run (README: relocate before making a copy read-only)
    assert [tuple(r.values()) for r in ro.sql(COUNTS).to_pylist()] == [tuple(r.values()) for r in wh.sql(COUNTS).to_pylist()]
    assert polars_counts(ro) == polars_counts(wh)
    text = str(prepared["acts"].parent / "c1.txt")
    for args in (["corpus", "add", "x", "--source", text, "--tokenizer", str(wh.root / "models" / "m")],
                 ["import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"])],
                 ["correlate", "s1", "s2", "--corpus", "c1"], ["relocate"]):
        result = run_cli(ro, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "is read-only" in error_line(result)
    assert tree_hashes(wh.root) == before


def test_unwritable_warehouse_without_a_mount(wh, prepared, monkeypatch):
    """Always runs (no mount, and root ignores chmod): the folder reported unwritable, as chmod a-w does for a user."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if mode == os.W_OK and str(path).startswith(str(wh.root))
                        else real_access(path, mode, **kw))
    before = tree_hashes(wh.root)
    assert run_cli(wh, "models").exit_code == 0 and run_cli(wh, "sql", "SELECT count(*) FROM activations").exit_code == 0
    result = run_cli(wh, "import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"]))
    assert result.exit_code == 1 and re.search(r"warehouse .* is read-only \(.* is not writable\); reads work", error_line(result))
    assert tree_hashes(wh.root) == before


# -- 5. damaged or missing catalogs; reads never create a warehouse ---------------------------------


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "deleted"])
def test_damaged_or_missing_catalog_is_refused_and_kept(wh, prepared, damage):
    text = prepared["acts"].parent / "c1.txt"
    data = wh.db_path.read_bytes()
    if damage == "garbage":
        wh.db_path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "truncated":
        wh.db_path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        wh.db_path.write_bytes(b"")
    else:
        wh.db_path.unlink()
    before = tree_hashes(wh.root)
    for args in (["models"], ["corpus", "add", "x", "--source", str(text), "--tokenizer", str(wh.root / "models" / "m")],
                 ["import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"])], ["relocate"]):
        result = run_cli(wh, *args)
        assert result.exit_code == 1, (args, result.output)
        line = error_line(result)
        assert ("is damaged" if damage != "deleted" else "the catalog is missing") in line
        assert "nothing was changed" in line and "restore featstore.duckdb" in line
    assert tree_hashes(wh.root) == before


def test_garbage_inside_the_catalog_refuses_every_write_and_changes_nothing(wh, prepared):
    """256 KiB of garbage in the middle of the catalog: DuckDB opens it and answers from the intact
    tables, so without a check of every block a write would commit into it."""
    size = wh.db_path.stat().st_size
    with open(wh.db_path, "r+b") as fh:
        fh.seek(size // 2 + 1000)
        fh.write(np.random.default_rng(0).bytes(256 * 1024))
    before = tree_hashes(wh.root)
    for args in (["corpus", "add", "x", "--source", str(prepared["acts"].parent / "c1.txt"), "--tokenizer", str(wh.root / "models" / "m")],
                 ["import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"])]):
        result = run_cli(wh, *args)
        assert result.exit_code == 1, (args, result.output)
        assert re.fullmatch(r"error: the catalog \S+ is damaged \([12] of its [\d,]+ blocks fail their checksum, the first at "
                            r"byte [\d,]+\); nothing was changed: restore featstore.duckdb from a backup .*", error_line(result))
    assert tree_hashes(wh.root) == before


def test_reads_never_create_a_warehouse(tmp_path, tiny_tokenizer_dir):
    for args in (["models"], ["corpora"], ["sql", "SELECT 1"], ["persistence"], ["export", "models"]):
        result = run_cli(tmp_path / "wherehouse", *args)
        assert result.exit_code == 1, result.output
        assert "no warehouse at" in error_line(result)
    assert not (tmp_path / "wherehouse").exists()
    (tmp_path / "t.txt").write_text("a b c")
    result = run_cli(tmp_path / "new", "corpus", "add", "t", "--source", str(tmp_path / "t.txt"), "--tokenizer",
                     str(tiny_tokenizer_dir))
    assert result.exit_code == 0 and (tmp_path / "new" / "featstore.duckdb").is_file()


# -- 6. disk full ---------------------------------------------------------------------------------


def _fill(folder: Path, leave: int) -> Path:
    """Fill the file system of `folder` up to `leave` free bytes."""
    filler = folder / "filler"
    free = shutil.disk_usage(folder).free - leave
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(free, 0))
    return filler


@pytest.fixture
def tiny_disk(wh, tmp_path):
    """The warehouse copy on a tmpfs with little room left (needs root; skipped where mount is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    size = sum(p.stat().st_size for p in wh.root.rglob("*") if p.is_file()) + 4 * 2**20
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
    subprocess.run(["cp", "-a", str(wh.root), str(mount / "wh")], check=True)
    small = Warehouse(mount / "wh")
    small.relocate()
    yield small
    subprocess.run(["umount", "--lazy", str(mount)], check=True)  # DuckDB may keep a handle of a failed write


def test_disk_full_on_a_real_small_disk(tiny_disk, prepared, tmp_path, duckdb_shell):
    wh = tiny_disk
    big = tmp_path / "big.parquet"
    n = 400_000
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({"tok": np.sort(rng.integers(0, 454, n)).astype(np.uint32), "feature": rng.integers(0, 16, n).astype(np.uint32),
                             "act": rng.random(n).astype(np.float32) + 0.1}).group_by(["tok", "feature"]).aggregate([("act", "max")])
                   .rename_columns(["tok", "feature", "act"]), big)
    before = visible(wh, duckdb_shell)
    filler = _fill(wh.root.parent, leave=4096)
    for args in (["import-activations", "--sae", "s2", "--corpus", "c1", str(big)],
                 ["ingest", "m", "--corpus", "c2", "--sae", "s1", "--device", "cpu"]):
        result = run_cli(wh, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "disk full" in error_line(result) and "nothing was committed" in error_line(result)
    with open(filler, "ab") as fh:  # now truly full: catalog writes (registration, correlate) fail too
        fh.write(b"\0" * shutil.disk_usage(wh.root).free)
    for args in (["sae", "add", "s3", str(wh.root / "saes" / "s2"), "--model", "m", "--not-primary"], list(CORRELATE)):
        result = run_cli(wh, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "disk full" in error_line(result), result.output
    filler.unlink()
    assert visible(wh, duckdb_shell) == before
    for args in (["import-activations", "--sae", "s2", "--corpus", "c1", str(big)],
                 ["sae", "add", "s3", str(wh.root / "saes" / "s2"), "--model", "m", "--not-primary"], list(CORRELATE)):
        result = run_cli(wh, *args)
        assert result.exit_code == 0, (args, result.output)


def test_a_catalog_write_on_a_full_disk_commits_nothing_and_leaves_no_wal(tiny_disk, tmp_path):
    """The disk fills at different points of a corpus add (DuckDB's blocks, the WAL, the checkpoint): each
    time one line, the catalog as before with no `.wal` beside it, and the same command works once there
    is room."""
    wh = tiny_disk
    text = tmp_path / "big.txt"
    text.write_text("\n\n".join(tiny_texts(4000, seed=3)))
    add = ["corpus", "add", "big", "--source", str(text), "--tokenizer", str(wh.root / "models" / "m")]
    corpora = "SELECT name, n_tokens FROM corpora ORDER BY ALL"
    original, before, failed = wh.db_path.read_bytes(), wh.query(corpora), 0
    for leave in (64 * 1024, 512 * 1024, 1024 * 1024, 2 * 1024 * 1024):
        filler = _fill(wh.root.parent, leave)
        result = run_cli(wh, *add)
        if result.exit_code:
            failed += 1
            assert error_line(result).startswith(f"error: disk full while writing under {wh.root}: nothing was committed")
            assert not wh.wal_path.exists() and Warehouse(wh.root).query(corpora) == before
        filler.unlink()
        assert run_cli(wh, *add, "--replace").exit_code == 0
        wh.db_path.write_bytes(original)
    assert failed


def test_disk_full_simulated_in_the_parquet_writer(wh, prepared, monkeypatch):
    """Always runs (no mount needed): ENOSPC raised where the partition file is written."""
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", full)
    before = tree_hashes(wh.root)
    result = run_cli(wh, "import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"]))
    assert result.exit_code == 1
    assert error_line(result).startswith(f"error: disk full while writing under {wh.root}: nothing was committed")
    assert {k: v for k, v in tree_hashes(wh.root).items()} == before
    monkeypatch.undo()
    assert run_cli(wh, "import-activations", "--sae", "s1", "--corpus", "c1", str(prepared["acts"])).exit_code == 0


# -- 9. unexpected exceptions ------------------------------------------------------------------------


def test_unexpected_exception_is_one_line_with_log_and_debug(wh, monkeypatch):
    import featstore.models.catalog

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(featstore.models.catalog, "list_models", broken)
    result = run_cli(wh, "models")
    assert result.exit_code == 1
    line = error_line(result)
    assert line.startswith("error: unexpected ZeroDivisionError: boom (traceback in ") and "--debug" in line
    from cli import ERROR_LOG

    assert "ZeroDivisionError" in ERROR_LOG.read_text()
    debug = invoke("--debug", "--warehouse", str(wh.root), "models")
    assert isinstance(debug.exception, ZeroDivisionError)


# -- 7, 8. lineage cycles, the correlation contract (on catalogs written with SQL) -----------------


@pytest.fixture
def lineage(warehouse):
    """Models root -> base -> child (fine-tunes), SAEs sr, sa, sb on corpus c (40 tokens), correlated
    along both edges. Feature 0 of sa fires on every token with one value; feature 2 never fires."""
    from featstore.correlation.correlate import correlate

    cat = FakeCatalog(warehouse)
    cat.model("root")
    cat.model("base", parents=["root"], relation="finetune")
    cat.model("child", parents=["base"], relation="finetune")
    for sae, model in (("sr", "root"), ("sa", "base"), ("sb", "child")):
        cat.sae(sae, model, d_sae=3)
    start = cat.corpus("c", 40, token_ids=[i % 5 for i in range(40)])
    rng = np.random.default_rng(0)
    wave = rng.random(40) + 0.1
    for sae in ("sr", "sa", "sb"):
        tok = list(range(start, start + 40)) * 2
        feature = [0] * 40 + [1] * 40
        act = ([1.0] * 40 if sae == "sa" else list(wave)) + list(wave * (1 + 0.1 * rng.random(40)))
        cat.activations(sae, "c", tok, feature, act, n_tokens=40)
    for a, b in (("sr", "sa"), ("sa", "sb")):
        correlate(warehouse, a, b, corpus="c", progress=False)
    return warehouse


def test_constant_feature_is_labelled_constant_not_dead(lineage):
    status = {(r["sae"], r["feature"]): r["status"] for r in lineage.query(
        "SELECT sae, feature, status FROM persistence WHERE side = 'parent'").to_pylist()}
    assert status[("sa", 0)] == "constant" and status[("sa", 2)] == "dead" and status[("sa", 1)] == "persists"


def test_constant_merge_feature_is_labelled_constant_not_dead(warehouse):
    from featstore.correlation.correlate import correlate

    cat = FakeCatalog(warehouse)
    for model, parents in (("pa", []), ("pb", []), ("m", ["pa", "pb"])):
        cat.model(model, parents=parents, relation="merge" if parents else None, merge_t=0.5 if parents else None)
        cat.sae(f"s{model}", model, d_sae=3)
    start = cat.corpus("c", 40, token_ids=[i % 5 for i in range(40)])
    wave = np.random.default_rng(0).random(40) + 0.1
    for model in ("pa", "pb", "m"):  # feature 0 of the merge fires with one value, feature 2 never fires
        act = ([1.0] * 40 if model == "m" else list(wave)) + list(wave)
        cat.activations(f"s{model}", "c", list(range(start, start + 40)) * 2, [0] * 40 + [1] * 40, act, n_tokens=40)
    for parent in ("spa", "spb"):
        correlate(warehouse, parent, "sm", corpus="c", progress=False)
    got = {r["feature"]: r["inheritance"] for r in warehouse.query("SELECT feature, inheritance FROM merge_inheritance").to_pylist()}
    assert got == {0: "constant", 1: "both", 2: "dead"}


def test_cyclic_lineage_in_a_hand_edited_catalog_cannot_hang_feature_families(lineage):
    import threading

    with lineage.transaction() as con:  # registration refuses this; a hand edit can still do it
        con.execute("INSERT INTO lineage (parent, child, relation) VALUES ('child', 'base', 'finetune')")
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " SELECT 99, 'sb', 'sa', corpus, stat, r_floor, n_tokens, n_pairs FROM correlation_runs WHERE sae_a = 'sa'")
        con.execute("INSERT INTO best_matches SELECT 99, CASE side WHEN 'a' THEN 'b' ELSE 'a' END, feature, match, r"
                    " FROM best_matches WHERE run_id = (SELECT id FROM correlation_runs WHERE sae_a = 'sa')")
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        depth=lineage.query("SELECT max(depth) AS d FROM feature_families").column("d")[0].as_py()), daemon=True)
    worker.start()
    worker.join(60)
    assert result.get("depth") == 64


def test_lineage_cycles_are_refused_at_registration(lineage, tiny_model_dir):
    from featstore.models.catalog import register_model

    with lineage.transaction() as con:
        con.execute("DELETE FROM lineage")
        con.execute("DELETE FROM models")
    register_model(lineage, "a", tiny_model_dir, kind="base")
    register_model(lineage, "b", tiny_model_dir, kind="finetune", parents=["a"])
    register_model(lineage, "c", tiny_model_dir, kind="finetune", parents=["b"])
    for name, kind, parents in (("a", "finetune", ["c"]), ("a", "finetune", ["b"]), ("b", "merge", ["c", "a"])):
        with pytest.raises(FeatstoreError, match="would close a lineage cycle"):
            register_model(lineage, name, tiny_model_dir, kind=kind, parents=parents, replace=True)
    assert lineage.query("SELECT parent, child FROM lineage ORDER BY ALL").to_pylist() == [
        {"parent": "a", "child": "b"}, {"parent": "b", "child": "c"}]


def test_token_type_means_are_double(lineage):
    assert lineage.scalar("SELECT DISTINCT typeof(x) FROM corr_type_means('sa', 'c')") == "DOUBLE"


def test_cofiring_needs_a_minimum_number_of_shared_tokens(warehouse):
    """Two features co-firing on 2 tokens get r = ±1 by construction: not a match by default."""
    from featstore.correlation.correlate import MIN_COFIRING, correlate

    cat = FakeCatalog(warehouse)
    cat.model("base")
    cat.sae("a", "base", d_sae=1)
    cat.sae("b", "base", d_sae=1, primary=False)
    cat.corpus("c", 30)
    cat.activations("a", "c", list(range(20)), [0] * 20, [1.0 + (i % 3) for i in range(20)], n_tokens=30)
    cat.activations("b", "c", [0, 1, 25, 26, 27], [0] * 5, [1.0, 2.0, 5.0, 4.0, 3.0], n_tokens=30)  # 2 shared
    strict = correlate(warehouse, "a", "b", corpus="c", stat="cofiring", r_floor=-1, progress=False)
    assert MIN_COFIRING >= 5 and strict["n_pairs"] == 0 and strict["min_cofiring"] == MIN_COFIRING
    loose = correlate(warehouse, "a", "b", corpus="c", stat="cofiring", r_floor=-1, min_cofiring=2, progress=False)
    assert loose["n_pairs"] == 1 and loose["min_cofiring"] == 2 and loose["engine"] == "sql"  # the run row says how
    assert warehouse.scalar("SELECT r FROM correlations WHERE run_id = ?", [loose["id"]]) == pytest.approx(1.0)
