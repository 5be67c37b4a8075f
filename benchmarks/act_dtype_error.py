"""The r error of storing activations as bfloat16 or float16 (`featstore ingest --act-dtype`), measured.

    python benchmarks/act_dtype_error.py                     # 50k tokens x 16,384 features
    python benchmarks/act_dtype_error.py --smoke             # 3,000 tokens x 256 features: seconds

benchmarks/correlate.py's synthetic SAEs are stored once as float32 and once rounded to each half
precision; the same all_tokens correlation runs on each, and the stored pairs and best matches are
compared with the float32 run's. Bytes per stored activation are printed beside. The figures and the
ratios against float32 (bytes per activation, correlate seconds) go into a JSON record
(benchmarks/record.py; docs/benchmarks/act_dtype_error.json at full size).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from correlate import CORPUS, SAE_A, SAE_B, build_warehouse  # noqa: E402
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.correlation.correlate import correlate  # noqa: E402
from featstore.warehouse import Warehouse  # noqa: E402


def results(wh: Warehouse, engine: str) -> tuple[dict, dict]:
    run = correlate(wh, SAE_A, SAE_B, corpus=CORPUS, engine=engine, progress=False)
    pairs = {(r["feature_a"], r["feature_b"]): r["r"] for r in wh.query("SELECT * FROM correlations WHERE run_id = ?", [run["id"]]).to_pylist()}
    best = {(r["side"], r["feature"]): (r["match"], r["r"]) for r in wh.query("SELECT * FROM best_matches WHERE run_id = ?", [run["id"]]).to_pylist()}
    return pairs, best


def rewrite(wh: Warehouse, originals: dict, act_dtype: str) -> float:
    """Both partitions again with the float32 originals' act rounded to `act_dtype`; bytes per activation."""
    for sae, table in originals.items():
        act = torch.as_tensor(table["act"].to_numpy()).to(getattr(torch, act_dtype)).float().numpy()
        keep = act > 0
        rounded = pa.table({"tok": table["tok"].filter(pa.array(keep)), "feature": table["feature"].filter(pa.array(keep)),
                            "act": pa.array(act[keep], pa.float32())})
        wh.write_partition(sae, CORPUS, [rounded], n_tokens=wh.scalar("SELECT n_tokens FROM corpora WHERE name = ?", [CORPUS]),
                           origin="import", act_dtype=act_dtype)
    return wh.scalar("SELECT sum(bytes) / sum(n_rows) FROM activation_partitions")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--l0", type=int, default=20)
    parser.add_argument("--planted", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engine", default="torch")
    args = parse_args(parser, smoke=dict(tokens=3_000, features=256, l0=10, planted=16))
    load_start = os.getloadavg()
    figures, ratios = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(Path(tmp) / "warehouse")
        build_warehouse(wh.root, args)
        size = wh.scalar("SELECT sum(bytes) / sum(n_rows) FROM activation_partitions")
        started = time.perf_counter()
        pairs, best = results(wh, args.engine)
        seconds = time.perf_counter() - started
        originals = {sae: pq.read_table(wh.partition_files(sae, CORPUS)) for sae in (SAE_A, SAE_B)}
        print(f"float32: {size:.2f} bytes per activation, {len(pairs):,} pairs with r >= 0.2")
        figures.update(float32_bytes_per_activation=size, float32_pairs=len(pairs), float32_correlate_seconds=seconds,
                       best_matches=len(best))
        reference = {"size": size, "seconds": seconds}
        for act_dtype in ("bfloat16", "float16"):
            size = rewrite(wh, originals, act_dtype)
            started = time.perf_counter()
            half_pairs, half_best = results(wh, args.engine)
            seconds = time.perf_counter() - started
            shared = pairs.keys() & half_pairs.keys()
            dr = np.array([abs(pairs[k] - half_pairs[k]) for k in shared])
            best_dr = np.array([abs(best[k][1] - half_best[k][1]) for k in best if best[k][1] is not None and half_best[k][1] is not None])
            changed = sum(best[k][0] != half_best[k][0] for k in best)
            print(f"{act_dtype}: {size:.2f} bytes per activation; pairs |Δr| max {dr.max():.1e}, mean {dr.mean():.1e}; "
                  f"pairs only on one side {len(pairs.keys() ^ half_pairs.keys())}; best matches |Δr| max {best_dr.max():.1e}, "
                  f"{changed} of {len(best):,} best matches changed")
            figures.update({f"{act_dtype}_bytes_per_activation": size, f"{act_dtype}_correlate_seconds": seconds,
                            f"{act_dtype}_pairs": len(half_pairs), f"{act_dtype}_pairs_max_abs_dr": dr.max(initial=0.0),
                            f"{act_dtype}_pairs_mean_abs_dr": dr.mean() if dr.size else 0.0,
                            f"{act_dtype}_pairs_one_side_only": len(pairs.keys() ^ half_pairs.keys()),
                            f"{act_dtype}_best_max_abs_dr": best_dr.max(initial=0.0), f"{act_dtype}_best_changed": changed})
            ratios[f"{act_dtype}_over_float32_bytes_per_activation"] = size / reference["size"]
            ratios[f"{act_dtype}_over_float32_correlate_seconds"] = seconds / reference["seconds"]
    write_record("act_dtype_error", figures, ratios, settings_of(args), args.out, load_start=load_start)


if __name__ == "__main__":
    main()
