"""Benchmark the Spark SQL engine at local[1] against local[2] on the same correlate job, in the same run.

    python benchmarks/spark_scaling.py                           # 100k tokens x 4,096 features, 3 rounds
    python benchmarks/spark_scaling.py --tokens 200000 --features 16384 --masters "local[1],local[2],local[4]"
    python benchmarks/spark_scaling.py --smoke                   # 2,000 tokens x 256 features, 1 round, C1-only JVMs: ~1 min

The data are benchmarks/correlate.py's synthetic SAEs. Each master runs in its own process, pinned to
as many cores as it has task slots (local[1] on one core: otherwise the JVM's garbage collector and JIT
compiler run on the other and local[1] is not one core's time); the SparkSession is started (and
warmed up by one small query) before the clock starts, so the time is the correlate call itself
(export, Spark job, commit into DuckDB). The masters take turns for --rounds rounds and the ratio is of
the medians: on a shared machine three runs of one master varied by up to 40 %. The results are checked
against the SQL engine's run of the same job. The figures and the ratios (first master's median over each
other's) go into a JSON record (benchmarks/record.py; docs/benchmarks/spark_scaling.json at full size).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from correlate import CORPUS, SAE_A, SAE_B, build_warehouse, load, sizes  # noqa: E402
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.correlation.engines.spark import local_cores  # noqa: E402
from featstore.warehouse import Warehouse  # noqa: E402


def run_spark(root: Path, master: str, floor: float) -> dict:
    from featstore.correlation.correlate import correlate
    from featstore.correlation.engines.spark import session

    spark = session(master)
    spark.sql("SELECT count(*) FROM range(1000)").collect()
    started = time.perf_counter()
    run = correlate(Warehouse(root), SAE_A, SAE_B, corpus=CORPUS, r_floor=floor, engine="spark", progress=False)
    return {"seconds": time.perf_counter() - started, "n_pairs": run["n_pairs"], "n_cofiring_pairs": run["n_cofiring_pairs"]}


def pinned(master: str):
    """A preexec_fn pinning the child to the first N cores of local[N] (None: a cluster, or more slots than cores)."""
    cores = local_cores(master)
    if cores is None or cores > len(os.sched_getaffinity(0)):
        return None
    return lambda: os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])


def stored(wh: Warehouse) -> dict:
    rows = wh.query("SELECT feature_a, feature_b, r FROM correlations").to_pylist()
    return {(r["feature_a"], r["feature_b"]): r["r"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=4096)
    parser.add_argument("--l0", type=int, default=20)
    parser.add_argument("--planted", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floor", type=float, default=0.2)
    parser.add_argument("--masters", default="local[1],local[2]")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each master, taking turns")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--jvm-options", default="", help="added to the Spark processes' JAVA_TOOL_OPTIONS (--smoke: C1"
                        " compiler only and the serial GC, which roughly halve a tiny job's time in a fresh JVM)")
    parser.add_argument("master", nargs="?", help=argparse.SUPPRESS)
    args = parse_args(parser, smoke=dict(tokens=2_000, features=256, l0=10, planted=16, rounds=1,
                                         jvm_options="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"))
    if args.master:
        print(json.dumps(run_spark(args.dir, args.master, args.floor)))
        return
    from featstore.correlation.correlate import correlate

    load_start = os.getloadavg()
    figures, ratios = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "warehouse"
        build_warehouse(root, args)
        wh = Warehouse(root)
        started = time.perf_counter()
        reference = correlate(wh, SAE_A, SAE_B, corpus=CORPUS, r_floor=args.floor, engine="sql", progress=False)
        expected = stored(wh)
        figures.update(sql_seconds=time.perf_counter() - started, sql_pairs=len(expected),
                       n_cofiring_pairs=reference["n_cofiring_pairs"])
        print(f"data: {args.tokens:,} tokens x {args.features:,} features, L0 {args.l0}; SQL engine {time.perf_counter() - started:.1f} s, "
              f"{reference['n_cofiring_pairs']:,} co-firing pairs [load average {load()}]")
        times = {master: [] for master in args.masters.split(",")}
        java_options = " ".join(filter(None, [os.environ.get("JAVA_TOOL_OPTIONS"), args.jvm_options]))
        env = {**os.environ, **({"JAVA_TOOL_OPTIONS": java_options} if java_options else {})}
        for round_ in range(1, args.rounds + 1):
            for master in times:
                pin = pinned(master)
                done = subprocess.run([sys.executable, __file__, "--dir", str(root), "--floor", str(args.floor), *sizes(args), master],
                                      capture_output=True, text=True, preexec_fn=pin, env=env)
                if done.returncode != 0:
                    raise SystemExit(f"{master} failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                got = stored(wh)
                max_dr = max((abs(got[k] - expected[k]) for k in got.keys() & expected.keys()), default=0.0)
                times[master].append(result["seconds"])
                figures[f"{master}_pairs"] = len(got)
                figures[f"{master}_max_abs_dr"] = max(max_dr, figures.get(f"{master}_max_abs_dr", 0.0))
                cores = "all cores" if pin is None else f"{local_cores(master)} core(s)"
                print(f"round {round_} spark {master} on {cores}: {result['seconds']:.1f} s; pairs {len(got):,} "
                      f"(SQL {len(expected):,}), max |Δr| {max_dr:.1e} [load average {load()}]")
        medians = {master: statistics.median(seconds) for master, seconds in times.items()}
        figures.update({f"{master}_median_seconds": seconds for master, seconds in medians.items()})
        first, *rest = medians
        for master in rest:
            print(f"scaling {first} / {master} (medians {medians[first]:.1f} / {medians[master]:.1f} s): "
                  f"{medians[first] / medians[master]:.2f}x")
            ratios[f"{first}_over_{master}_median_seconds"] = medians[first] / medians[master]
        print(f"machine: {os.cpu_count()} cores, load average {load()} at the end")
    write_record("spark_scaling", figures, ratios, settings_of(args, "master"), args.out, load_start=load_start)


if __name__ == "__main__":
    main()
