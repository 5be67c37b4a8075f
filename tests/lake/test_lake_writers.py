"""Many writers, one lake, no featstore locks: shard processes ingesting at once publish the partition once
and equal an unsharded ingest; a writer killed with SIGKILL inside its commit leaves nothing visible and
its rerun completes the set; a reader polling throughout sees whole partitions only; of two writers
replacing one (SAE, corpus) at the same moment one wins and the other fails cleanly and can rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from helpers import build_lineage

from featstore.activations.ingest import ingest
from featstore.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[2]
FAULT_RUNNER = REPO / "tests" / "fault_runner.py"
CLI = "import sys; from cli import main; main(sys.argv[1:], prog_name='featstore')"
REFRESH = "featstore.warehouse.core:Warehouse._refresh_activations_view"  # runs inside the partition's commit


def featstore(root: Path, *args: str, fault: tuple[str, ...] = ()) -> subprocess.Popen:
    """`featstore --warehouse ROOT ARGS` in its own process, in this (the lake's) environment."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(duckdb.__file__).parents[1]), str(REPO)])}
    program = [str(FAULT_RUNNER), *fault, "--"] if fault else ["-c", CLI]
    return subprocess.Popen([sys.executable, *program, "--warehouse", str(root), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=300)
    return process.returncode, output


def last_lines(output: str) -> str:
    """A process's last lines without its progress bars."""
    return "\n".join(line for line in output.splitlines() if "it/s]" not in line and "tok/s" not in line)[-800:]


def rows(wh: Warehouse, sae: str = "m-sae") -> list[tuple]:
    table = pq.read_table(wh.partition_files(sae, "c"), columns=["tok", "feature", "act"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))))


@pytest.fixture
def lineage(tmp_path, lake_warehouse, warehouse, tiny_model_dir, tiny_tokenizer_dir):
    """The same models, SAEs and corpus in the lake and in a file warehouse, and the file warehouse's
    unsharded ingest of m: the rows every sharded run must reproduce."""
    for wh in (lake_warehouse, warehouse):
        build_lineage(wh, tiny_model_dir, tiny_tokenizer_dir, tmp_path / f"{wh.root.name}-files")
    ingest(warehouse, "m", batch_size=4, device="cpu", progress=False)
    return lake_warehouse, rows(warehouse)


class Reader(threading.Thread):
    """Polls the activations of m-sae through the SQL views until stopped; keeps every distinct answer."""

    def __init__(self, root: Path):
        super().__init__(daemon=True)
        self.wh, self.seen, self.stop, self.polls = Warehouse(root), set(), threading.Event(), 0

    def run(self) -> None:
        while not self.stop.is_set():
            answer = self.wh.query("SELECT count(*) AS n, round(sum(act), 3) AS s FROM activations WHERE sae = 'm-sae'")
            self.seen.add(tuple(answer.to_pylist()[0].values()))
            self.polls += 1


def test_shard_processes_at_once_publish_once_and_equal_the_unsharded_ingest(lineage):
    wh, expected = lineage
    reader = Reader(wh.root)
    reader.start()
    shards = [featstore(wh.root, "ingest", "m", "--shard", f"{i}/4", "--device", "cpu") for i in range(4)]
    results = [finish(p) for p in shards]
    reader.stop.set()
    reader.join()
    assert all(code == 0 for code, _ in results), [last_lines(out) for _, out in results]
    assert sum("published ->" in out for _, out in results) >= 1
    assert rows(wh) == expected and len(wh.partition_files("m-sae", "c")) == 4
    assert wh.scalar("SELECT count(*) FROM ingest_parts") == 0
    assert not [p for p in (wh.root / "staging" / "shards").iterdir() if p.is_dir()]
    whole = (len(expected), round(sum(r[2] for r in expected), 3))
    assert reader.polls >= 3 and reader.seen <= {(0, None), whole}, reader.seen
    final = wh.query("SELECT count(*) AS n, round(sum(act), 3) AS s FROM activations WHERE sae = 'm-sae'")
    assert tuple(final.to_pylist()[0].values()) == whole


def test_a_shard_killed_inside_its_commit_leaves_nothing_and_its_rerun_publishes(lineage):
    wh, expected = lineage
    for i in (0, 1):
        code, out = finish(featstore(wh.root, "ingest", "m", "--shard", f"{i}/3", "--device", "cpu"))
        assert code == 0 and "waiting for shards" in out, last_lines(out)
    code, out = finish(featstore(wh.root, "ingest", "m", "--shard", "2/3", "--device", "cpu",
                                 fault=(REFRESH, "kill", "after", "1")))
    assert code == -signal.SIGKILL, last_lines(out)
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0
    assert wh.scalar("SELECT count(*) FROM activations") == 0
    assert wh.scalar("SELECT count(*) FROM ingest_parts") == 3  # the three parts committed before the kill
    code, out = finish(featstore(wh.root, "ingest", "m", "--shard", "2/3", "--device", "cpu"))
    assert code == 0 and "published ->" in out, last_lines(out)
    assert rows(wh) == expected and wh.scalar("SELECT count(*) FROM ingest_parts") == 0


def test_two_writers_replacing_one_partition_at_once_leave_one_clean_loser(lineage, tmp_path):
    wh, _ = lineage
    ingest(wh, "m", batch_size=4, device="cpu", progress=False)
    go = tmp_path / "go"
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    writers = [featstore(wh.root, "ingest", "m", "--corpus", "c", "--device", "cpu", "--context", str(context),
                         fault=(REFRESH, f"touch{ready[i]}+waitfor{go}", "after", "1"))
               for i, context in enumerate((16, 32))]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline and all(w.poll() is None for w in writers):
        time.sleep(0.1)
    assert all(r.exists() for r in ready), [last_lines(finish(w)[1]) for w in writers if w.poll() is not None]
    go.touch()
    (code_a, out_a), (code_b, out_b) = (finish(p) for p in writers)
    assert sorted([code_a, code_b]) == [0, 1], (last_lines(out_a), last_lines(out_b))
    loser_out = out_a if code_a else out_b
    assert "another writer replaced the activations of SAE 'm-sae' on corpus 'c'" in loser_out
    winner_context = 16 if code_a == 0 else 32
    stored = wh.query("SELECT n_rows FROM activation_partitions WHERE sae = 'm-sae'").to_pylist()
    assert len(stored) == 1 and stored[0]["n_rows"] == len(rows(wh))
    loser_context = 48 - winner_context
    code, out = finish(featstore(wh.root, "ingest", "m", "--corpus", "c", "--device", "cpu", "--context", str(loser_context)))
    assert code == 0, last_lines(out)
    assert wh.scalar("SELECT count(*) FROM activation_partitions WHERE sae = 'm-sae'") == 1
