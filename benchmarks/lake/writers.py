"""Benchmark many writers on one DuckLake warehouse: N shard processes ingesting at once against the same
ingest unsharded, with a reader querying throughout, beside the same N shards on the single-file catalog.

    python benchmarks/lake/writers.py                  # 8 shards, 40,000 tokens, tiny-preset shapes
    python benchmarks/lake/writers.py --smoke          # 8 shards, 2,000 tokens: about a minute
    python benchmarks/lake/writers.py --shards 16 --tokens 200000

Runs in the lake's environment (duckdb 1.5 and its extensions first on the path, as `make test` puts
them: `PYTHONPATH=.ducklake`) and starts its own PostgreSQL server (Debian's postgresql package,
tests/pgserver.py). Measured: wall time of the unsharded ingest and of the N shards (from the first
shard's ingest call to the last one's return), each shard's commit overhead (its catalog commits:
recording its part and trying to publish), the reader's query latency while the shards write and
which answers it saw (only "nothing" and "the whole partition" may appear), and whether the N-shard
rows equal the unsharded rows. Each shard process uses one torch thread. The record goes to
docs/benchmarks/lake_writers.json at full size (benchmarks/record.py).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent.parent / "tests"))
from ingest_shards import CORPUS, MODEL, SAE, build, finished  # noqa: E402
from record import parse_args, settings_of, write_record  # noqa: E402

QUERY = f"SELECT count(*) AS n, round(sum(act), 2) AS s FROM activations WHERE sae = '{SAE}'"


def shard_process(root: Path, spec: str, batch_size: int) -> dict:
    """One shard (or, for 0/1, the unsharded ingest) in this process, its catalog commits timed."""
    import torch

    from featstore.activations import shards
    from featstore.activations.ingest import ingest
    from featstore.activations.shards import parse_shard
    from featstore.warehouse import Warehouse

    commit_seconds = []
    for name in ("record_part", "publish_if_complete"):
        original = getattr(shards, name)

        def timed(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                commit_seconds.append(time.perf_counter() - started)

        setattr(shards, name, timed)
    torch.set_num_threads(1)
    index, count = parse_shard(spec)
    started = time.time()
    done = ingest(Warehouse(root / "wh"), MODEL, corpus=CORPUS, batch_size=batch_size, device="cpu", progress=False,
                  shard=None if count == 1 else (index, count))
    return {"rows": done["rows"], "published": done.get("published", True), "started": started, "ended": time.time(),
            "commit_seconds": sum(commit_seconds)}


def spawn(root: Path, spec: str, batch_size: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, "--dir", str(root), "shard", spec, str(batch_size)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ingest_all(root: Path, count: int, batch_size: int) -> dict:
    """`count` shard processes side by side (one unsharded process for 1)."""
    results = [finished(p) for p in [spawn(root, f"{i}/{count}", batch_size) for i in range(count)]]
    commits = [r["commit_seconds"] for r in results]
    return {"seconds": max(r["ended"] for r in results) - min(r["started"] for r in results), "commits": commits,
            "published": sum(r["published"] for r in results)}


class Reader(threading.Thread):
    """Queries the partition's rows until stopped: each query's latency and every distinct answer."""

    def __init__(self, root: Path):
        from featstore.warehouse import Warehouse

        super().__init__(daemon=True)
        self.wh, self.latencies, self.answers, self.stop = Warehouse(root / "wh"), [], set(), threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            answer = tuple(self.wh.query(QUERY).to_pylist()[0].values())
            self.latencies.append(time.perf_counter() - started)
            self.answers.add(answer)
            time.sleep(0.05)


def rows(root: Path) -> list:
    import pyarrow.parquet as pq

    from featstore.warehouse import Warehouse

    table = pq.read_table(Warehouse(root / "wh").partition_files(SAE, CORPUS), columns=["tok", "feature", "act"])
    return sorted(zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))))


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=40_000)
    parser.add_argument("--docs", type=int, default=2000, help="generated stories to draw the corpus (and the BPE) from")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1, help="1: shard rows equal unsharded rows bit for bit")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("task", nargs="?", choices=["shard"], help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("batch", nargs="?", type=int, help=argparse.SUPPRESS)
    if "shard" in sys.argv[1:]:
        args = parser.parse_args()
        print(json.dumps(shard_process(args.dir, args.spec, args.batch)))
        return
    args = parse_args(parser, smoke={"tokens": 2000, "docs": 400})
    from pgserver import Postgres

    from featstore.warehouse import Warehouse

    scratch = Path(tempfile.mkdtemp(prefix="featstore-lake-bench-"))
    server = Postgres(scratch / "postgres")
    try:
        lake_root, file_root = scratch / "lake", scratch / "file"
        Warehouse.create_lake(lake_root / "wh", server.database())
        for root in (lake_root, file_root):
            build(root, args)
        print(f"built: {args.tokens:,} tokens, {args.shards} shards, load {load()}", flush=True)
        unsharded = ingest_all(lake_root, 1, args.batch_size)
        expected = rows(lake_root)
        print(f"lake, 1 process: {unsharded['seconds']:.1f} s, {len(expected):,} rows", flush=True)
        reader = Reader(lake_root)
        reader.start()
        lake = ingest_all(lake_root, args.shards, args.batch_size)
        reader.stop.set()
        reader.join()
        identical = rows(lake_root) == expected
        print(f"lake, {args.shards} shard processes: {lake['seconds']:.1f} s, rows identical: {identical}, "
              f"commit overhead per shard median {statistics.median(lake['commits']):.3f} s", flush=True)
        file = ingest_all(file_root, args.shards, args.batch_size)
        print(f"file catalog, {args.shards} shard processes: {file['seconds']:.1f} s, "
              f"commit overhead per shard median {statistics.median(file['commits']):.3f} s", flush=True)
    finally:
        server.stop()
    whole = {(0, None), (len(expected), round(sum(r[2] for r in expected), 2))}
    latencies = sorted(reader.latencies)
    figures = {
        "rows": len(expected), "rows_identical": identical, "partitions_published_by": lake["published"],
        "unsharded_lake_s": unsharded["seconds"], "sharded_lake_s": lake["seconds"], "sharded_file_s": file["seconds"],
        "commit_per_shard_lake_median_s": statistics.median(lake["commits"]),
        "commit_per_shard_lake_max_s": max(lake["commits"]),
        "commit_per_shard_file_median_s": statistics.median(file["commits"]),
        "reader_queries": len(latencies), "reader_latency_median_s": statistics.median(latencies),
        "reader_latency_p95_s": latencies[int(0.95 * (len(latencies) - 1))], "reader_latency_max_s": latencies[-1],
        "reader_saw_only_whole_snapshots": reader.answers <= whole,
    }
    ratios = {
        "sharded_over_unsharded_lake_wall": lake["seconds"] / unsharded["seconds"],
        "sharded_lake_over_file_wall": lake["seconds"] / file["seconds"],
        "commit_lake_over_file_median": figures["commit_per_shard_lake_median_s"] / figures["commit_per_shard_file_median_s"],
    }
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}")
    write_record("lake_writers", figures, ratios, settings_of(args, "dir", "task", "spec", "batch"), args.out)
    if not (identical and figures["reader_saw_only_whole_snapshots"]):
        raise SystemExit("the sharded rows differ from the unsharded ones, or the reader saw a partial partition")


if __name__ == "__main__":
    main()
