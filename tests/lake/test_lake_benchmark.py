"""benchmarks/lake/writers.py at smoke size, in the lake's environment: it exits 0 and writes one record
in which the N-shard rows equal the unsharded ones and the reader saw whole partitions only."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[2]


def test_the_lake_writers_benchmark_writes_its_record(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(duckdb.__file__).parents[1]), str(REPO)])}
    done = subprocess.run([sys.executable, "benchmarks/lake/writers.py", "--smoke", "--out", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (path,) = tmp_path.glob("*.json")
    record = json.loads(path.read_text())
    assert record["name"] == "lake_writers" and record["command"].startswith("python benchmarks/lake/writers.py --smoke")
    figures = record["figures"]
    assert figures["rows_identical"] is True and figures["reader_saw_only_whole_snapshots"] is True
    assert figures["rows"] > 0 and figures["reader_queries"] > 0 and figures["partitions_published_by"] >= 1
    assert all(math.isfinite(v) and v > 0 for v in record["ratios"].values())
