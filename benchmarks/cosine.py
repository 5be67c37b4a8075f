"""Benchmark featstore's blocked exact cosine matching against a plain dense torch matmul, same run.

    python benchmarks/cosine.py                          # 16,384 x 16,384 features of width 1,024, CPU
    python benchmarks/cosine.py --features 65536 --no-dense
    python benchmarks/cosine.py --smoke                  # 512 x 512 features of width 64, 1 thread: seconds

Two synthetic decoders: b holds --planted noisy copies of a's rows (cosine about 0.98), the rest are
random. Each engine runs in its own subprocess so its peak RSS is its own: featstore's
cosine_candidates (blocked: top-k both ways plus every pair above the floor, never the F x F matrix),
the dense matmul a @ b.T alone (the reference of the ratio), and the dense matmul followed by the same
reductions (whose candidate pairs must equal featstore's). Memory is reported as peak RSS and as the
growth over the RSS once the inputs exist. The figures and the ratios featstore / dense matmul go into a
JSON record (benchmarks/record.py; docs/benchmarks/cosine.json at full size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record  # noqa: E402


def inputs(args) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Decoder rows of both SAEs (unit norm) and, per planted row of a, its copy's row in b."""
    gen = torch.Generator().manual_seed(args.seed)
    a = torch.nn.functional.normalize(torch.randn(args.features, args.width, generator=gen), dim=1)
    b = torch.nn.functional.normalize(torch.randn(args.features, args.width, generator=gen), dim=1)
    source = torch.randperm(args.features, generator=gen)[: args.planted]
    target = torch.randperm(args.features, generator=gen)[: args.planted]
    b[target] = torch.nn.functional.normalize(a[source] + 0.2 / args.width**0.5 * torch.randn(args.planted, args.width, generator=gen), dim=1)
    planted = np.full(args.features, -1)
    planted[source.numpy()] = target.numpy()
    return a, b, planted


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_engine(args) -> dict:
    from featstore.matching.cosine import cosine_candidates

    torch.set_num_threads(args.threads)
    a, b, planted = inputs(args)
    base_rss = rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    if args.engine == "featstore":
        ia, ib, score = cosine_candidates(a, b, top_k=args.top_k, floor=args.floor, device="cpu")
    elif args.engine == "dense-matmul":
        scores = a @ b.T
        ia = ib = score = np.zeros(0)
    else:  # dense matmul plus featstore's reductions, on the whole matrix
        scores = a @ b.T
        cols = scores.topk(args.top_k, dim=1).indices
        rows = scores.topk(args.top_k, dim=0).indices
        r, c = (scores >= args.floor).nonzero(as_tuple=True)
        ia = torch.cat([torch.arange(len(a)).repeat_interleave(args.top_k), rows.flatten(), r]).numpy()
        ib = torch.cat([cols.flatten(), torch.arange(len(b)).repeat(args.top_k), c]).numpy()
        keys, first = np.unique(ia.astype(np.int64) * len(b) + ib, return_index=True)
        ia, ib, score = ia[first], ib[first], scores[ia[first], ib[first]].numpy()
    result = {"engine": args.engine, "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
              "peak_rss_mb": rss_mb(), "input_rss_mb": base_rss, "pairs": int(len(ia))}
    if len(ia):
        keys = np.sort(ia.astype(np.int64) * args.features + ib)
        result["pairs_checksum"] = int(keys.sum() % (1 << 61))
        best = {}
        for x, y, s in zip(ia.tolist(), ib.tolist(), score.tolist()):
            if s > best.get(x, (None, -2))[1]:
                best[x] = (y, s)
        sources = np.nonzero(planted >= 0)[0]
        result["planted_found"] = int(sum(best[int(s)][0] == planted[s] for s in sources))
    return result


def spawn(args, engine: str) -> dict:
    """One engine in a fresh process, given this run's sizes (smoke or not) as flags."""
    sizes = ("--features", args.features, "--width", args.width, "--top-k", args.top_k, "--floor", args.floor,
             "--planted", args.planted, "--seed", args.seed, "--threads", args.threads)
    cmd = [sys.executable, __file__, "--engine", engine, *map(str, sizes)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--width", type=int, default=1_024)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--floor", type=float, default=0.5)
    parser.add_argument("--planted", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-dense", action="store_true", help="skip the dense engines (they hold the F x F matrix)")
    parser.add_argument("--engine", choices=["featstore", "dense-matmul", "dense-reduced"], help=argparse.SUPPRESS)
    args = parse_args(parser, smoke=dict(features=512, width=64, planted=32, threads=1))
    if args.engine:
        print(json.dumps(run_engine(args)))
        return
    load_start = os.getloadavg()
    print(f"{args.features:,} x {args.features:,} features of width {args.width:,}, top-k {args.top_k}, floor {args.floor},"
          f" {args.threads} torch threads; load average before: {os.getloadavg()}")
    engines = ["featstore"] + ([] if args.no_dense else ["dense-matmul", "dense-reduced"])
    results = {engine: spawn(args, engine) for engine in engines}
    for r in results.values():
        print(f"{r['engine']:>14}: {r['seconds']:7.2f} s wall, {r['cpu_seconds']:7.2f} s CPU, peak RSS {r['peak_rss_mb']:7.0f} MB"
              f" (+{r['peak_rss_mb'] - r['input_rss_mb']:.0f} MB over the inputs), {r['pairs']:,} pairs"
              + (f", planted found {r['planted_found']}/{args.planted}" if "planted_found" in r else ""))
    figures = {f"{r['engine']}_{k}": v for r in results.values() for k, v in r.items() if k not in ("engine", "pairs_checksum")}
    ratios = {}
    if not args.no_dense:
        ours, matmul, reduced = results["featstore"], results["dense-matmul"], results["dense-reduced"]
        print(f"ratio featstore / dense matmul: {ours['seconds'] / matmul['seconds']:.2f} wall,"
              f" {ours['cpu_seconds'] / matmul['cpu_seconds']:.2f} CPU; memory growth"
              f" {(ours['peak_rss_mb'] - ours['input_rss_mb']) / max(1, matmul['peak_rss_mb'] - matmul['input_rss_mb']):.2f}x")
        same = (ours["pairs"], ours["pairs_checksum"]) == (reduced["pairs"], reduced["pairs_checksum"])
        print(f"featstore's candidate pairs equal the dense reduction's: {same}")
        ratios = {"featstore_over_dense_matmul_wall": ours["seconds"] / matmul["seconds"],
                  "featstore_over_dense_matmul_cpu": ours["cpu_seconds"] / matmul["cpu_seconds"],
                  "featstore_over_dense_matmul_memory_growth": (ours["peak_rss_mb"] - ours["input_rss_mb"])
                  / max(1, matmul["peak_rss_mb"] - matmul["input_rss_mb"])}
        figures["pairs_equal_dense_reduction"] = int(same)
    print(f"load average after: {os.getloadavg()}")
    write_record("cosine", figures, ratios, settings_of(args, "engine"), args.out, load_start=load_start)


if __name__ == "__main__":
    main()
