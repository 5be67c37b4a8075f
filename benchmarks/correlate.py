"""Benchmark `featstore correlate` (SQL, numba and torch engines) against scipy.sparse on two synthetic SAEs, in the same run.

    python benchmarks/correlate.py                                   # 200k tokens x 16,384 features, 1 and 2 threads
    python benchmarks/correlate.py --engines torch --threads 2 --tokens 1000000 --features 65536 --no-scipy
    python benchmarks/correlate.py --smoke                           # 3,000 tokens x 256 features, 1 thread: seconds

With several engines, each later engine's seconds are also given as a ratio to the first's (torch,numba
on a GPU machine: numba on the host's cores over torch on CUDA).

Synthetic activations: about --l0 active features per token per SAE, feature frequencies log-normal,
activations log-normal float32; --planted features of SAE a have a partner in SAE b that fires on the
same tokens with a noisy rescaled activation (r about 0.99). The data goes through the real warehouse
API (Warehouse.write_partition). Each engine runs in its own subprocess so its peak RSS is its own:
featstore's full `correlate` (read Parquet, compute, store), and scipy's CSR build + Aᵀ·B + Pearson
formula on the same Parquet (file reading and best-match extraction timed apart). The figures and the
ratios engine / scipy go into a JSON record (benchmarks/record.py; docs/benchmarks/correlate.json at full size).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.warehouse import Warehouse  # noqa: E402

CORPUS, SAE_A, SAE_B = "bench", "bench-a", "bench-b"


# -- synthetic data ----------------------------------------------------------------------------------


def synthetic(n_tokens: int, n_features: int, l0: int, n_planted: int, seed: int):
    """(tok, feature, act) arrays of both SAEs, sorted by (tok, feature), and the planted a -> b map."""
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, n_features)
    source = rng.choice(n_features, n_planted, replace=False)
    target = rng.choice(n_features, n_planted, replace=False)

    def draw(w):
        tok = np.repeat(np.arange(n_tokens, dtype=np.uint64), l0)
        key = np.unique(tok * n_features + rng.choice(n_features, size=tok.size, p=w / w.sum()))
        return (key // n_features).astype(np.uint32), (key % n_features).astype(np.uint32)

    tok_a, feat_a = draw(weights)
    act_a = rng.lognormal(0.0, 0.7, tok_a.size).astype(np.float32)
    weights_b = weights.copy()
    weights_b[target] = 0  # planted targets fire only with their source
    tok_b, feat_b = draw(weights_b)
    act_b = rng.lognormal(0.0, 0.7, tok_b.size).astype(np.float32)
    partner = np.full(n_features, -1, np.int64)
    partner[source] = target
    copied = partner[feat_a] >= 0
    noisy = act_a[copied] * 1.5 + rng.normal(0, 0.1, copied.sum())
    tok_b = np.concatenate([tok_b, tok_a[copied]])
    feat_b = np.concatenate([feat_b, partner[feat_a[copied]].astype(np.uint32)])
    act_b = np.concatenate([act_b, np.clip(noisy, 0.01, None).astype(np.float32)])
    order = np.lexsort((feat_b, tok_b))
    return (tok_a, feat_a, act_a), (tok_b[order], feat_b[order], act_b[order]), dict(zip(source.tolist(), target.tolist()))


def build_warehouse(root: Path, args) -> dict:
    """Catalog rows for two models, their SAEs and the corpus; activations through write_partition."""
    side_a, side_b, planted = synthetic(args.tokens, args.features, args.l0, args.planted, args.seed)
    wh = Warehouse(root)
    with wh.transaction() as con:
        con.execute("INSERT INTO corpora (name, source, tokenizer, n_documents, n_tokens, tok_start)"
                    " VALUES (?, 'synthetic', 'bench', 1, ?, 0)", [CORPUS, args.tokens])
        for model, sae in (("bench-base", SAE_A), ("bench-child", SAE_B)):
            con.execute("INSERT INTO models (name, kind, path, tokenizer) VALUES (?, 'imported', 'synthetic', 'bench')", [model])
            con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture)"
                        " VALUES (?, ?, 'blocks.0.mlp.hook_post', 0, 1024, ?, 'relu')", [sae, model, args.features])
    for sae, (tok, feature, act) in ((SAE_A, side_a), (SAE_B, side_b)):
        chunk = 2_000_000
        batches = (pa.table({"tok": tok[i:i + chunk], "feature": feature[i:i + chunk], "act": act[i:i + chunk]})
                   for i in range(0, tok.size, chunk))
        wh.write_partition(sae, CORPUS, batches, n_tokens=args.tokens, origin="import")
    return planted


# -- the two engines, each run in a subprocess -------------------------------------------------------


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run_featstore(root: Path, floor: float, engine: str, threads: int) -> dict:
    from featstore.correlation.correlate import correlate

    started, cpu = time.perf_counter(), time.process_time()
    run = correlate(Warehouse(root), SAE_A, SAE_B, corpus=CORPUS, r_floor=floor, engine=engine, threads=threads, progress=False)
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu, "peak_rss_gb": peak_rss_gb(),
            "n_cofiring_pairs": run["n_cofiring_pairs"], "n_pairs": run["n_pairs"]}


def run_scipy(root: Path, floor: float, out: Path) -> dict:
    """CSR matrices, C = Aᵀ·B, r = (C − Σa·Σb/N) / (‖a − ā‖·‖b − b̄‖) on C's nonzeros; then best matches."""
    import scipy.sparse as sp

    wh = Warehouse(root)
    n = wh.scalar("SELECT n_tokens FROM corpora WHERE name = ?", [CORPUS])
    d_sae = wh.scalar("SELECT d_sae FROM saes WHERE id = ?", [SAE_A])
    started = time.perf_counter()
    sides = [pq.read_table(wh.partition_files(sae, CORPUS)) for sae in (SAE_A, SAE_B)]
    read = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    mats = [sp.csr_matrix((t["act"].to_numpy().astype(np.float64), (t["tok"].to_numpy(), t["feature"].to_numpy())),
                          shape=(n, d_sae)) for t in sides]
    del sides
    product = (mats[0].T @ mats[1]).tocsr()
    sums = [np.asarray(m.sum(axis=0)).ravel() for m in mats]
    norms = [np.sqrt(np.maximum(np.asarray(m.multiply(m).sum(axis=0)).ravel() - s * s / n, 0)) for m, s in zip(mats, sums)]
    rows = np.repeat(np.arange(d_sae), np.diff(product.indptr))
    r = (product.data - sums[0][rows] * sums[1][product.indices] / n) / (norms[0][rows] * norms[1][product.indices])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = peak_rss_gb()
    started = time.perf_counter()
    u = [s / (nm * np.sqrt(n)) for s, nm in zip(sums, norms)]
    r_matrix = sp.csr_matrix((r, product.indices, product.indptr), shape=product.shape)
    best_a = best_matches(r_matrix, u[0], u[1], norms[0] > 0, norms[1] > 0)
    best_b = best_matches(r_matrix.T.tocsr(), u[1], u[0], norms[1] > 0, norms[0] > 0)
    keep = r >= floor
    np.savez(out, pair_a=rows[keep], pair_b=product.indices[keep], pair_r=r[keep], *best_a, *best_b)
    return {"seconds": seconds, "cpu_seconds": cpu, "read_seconds": read, "best_match_seconds": time.perf_counter() - started,
            "peak_rss_gb": peak, "n_cofiring_pairs": int(product.nnz)}


def best_matches(r, u_self, u_other, fires_self, fires_other):
    """Per row: best r over its co-firing partners, or −u·u' of the lowest-u partner it never co-fires with."""
    order = np.lexsort((np.arange(u_other.size), np.where(fires_other, u_other, np.inf)))[: fires_other.sum()]
    match = np.full(r.shape[0], -1)
    best = np.full(r.shape[0], np.nan)
    for row in np.flatnonzero(fires_self):
        partners, values = r.indices[r.indptr[row]:r.indptr[row + 1]], r.data[r.indptr[row]:r.indptr[row + 1]]
        if values.size:
            match[row], best[row] = partners[values.argmax()], values.max()
        k = 64
        while k < 4 * order.size:
            free = order[:k][~np.isin(order[:k], partners)]
            if free.size:
                quiet = -u_self[row] * u_other[free[0]]
                if np.isnan(best[row]) or quiet > best[row]:
                    match[row], best[row] = free[0], quiet
                break
            k *= 4
    return match, best


# -- comparison ---------------------------------------------------------------------------------------


def compare(root: Path, reference: Path, planted: dict, floor: float) -> dict:
    wh = Warehouse(root)
    run_id = wh.scalar("SELECT id FROM correlation_runs WHERE sae_a = ? AND sae_b = ? AND corpus = ?", [SAE_A, SAE_B, CORPUS])
    ref = np.load(reference)
    stored = wh.query("SELECT feature_a, feature_b, r FROM correlations WHERE run_id = ?", [run_id])
    ours = dict(zip(zip(stored["feature_a"].to_numpy().tolist(), stored["feature_b"].to_numpy().tolist()),
                    stored["r"].to_numpy().tolist()))
    theirs = dict(zip(zip(ref["pair_a"].tolist(), ref["pair_b"].tolist()), ref["pair_r"].tolist()))
    shared = ours.keys() & theirs.keys()
    differing = [k for k in ours.keys() ^ theirs.keys() if abs(ours.get(k, theirs.get(k)) - floor) > 1e-5]
    out = {"pairs_featstore": len(ours), "pairs_scipy": len(theirs), "pairs_differing": len(differing),
           "max_abs_dr_pairs": max((abs(ours[k] - theirs[k]) for k in shared), default=0.0)}
    identical, total, max_dr = 0, 0, 0.0
    for side, (match_ref, r_ref) in (("a", (ref["arr_0"], ref["arr_1"])), ("b", (ref["arr_2"], ref["arr_3"]))):
        best = wh.query("SELECT feature, match, r FROM best_matches WHERE run_id = ? AND side = ? ORDER BY feature", [run_id, side])
        match = best["match"].to_numpy(zero_copy_only=False)
        r = best["r"].to_numpy(zero_copy_only=False).astype(np.float64)
        match = np.where(np.isnan(r), -1, np.nan_to_num(match, nan=-1)).astype(np.int64)
        identical += int(np.sum(match == match_ref))
        total += match.size
        both = ~np.isnan(r) & ~np.isnan(r_ref)
        max_dr = max(max_dr, float(np.max(np.abs(r[both] - r_ref[both]), initial=0.0)))
    out.update(best_matches_identical=identical, best_matches_total=total, max_abs_dr_best=max_dr)
    out.update(planted_found(wh, run_id, planted))
    return out


def planted_found(wh: Warehouse, run_id: int, planted: dict) -> dict:
    best = wh.query("SELECT feature, match, r FROM best_matches WHERE run_id = ? AND side = 'a'", [run_id]).to_pylist()
    by_feature = {row["feature"]: row for row in best}
    found = sum(by_feature[a]["match"] == b and by_feature[a]["r"] >= 0.8 for a, b in planted.items())
    return {"planted": len(planted), "planted_found": found}


def bytes_per_activation(root: Path) -> float:
    return Warehouse(root).scalar("SELECT sum(bytes) / sum(n_rows) FROM activation_partitions")


# -- driver -------------------------------------------------------------------------------------------


def subprocess_json(*argv: str, threads: int) -> dict:
    env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}}
    done = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{argv[-2:]} run failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--l0", type=int, default=20)
    parser.add_argument("--planted", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floor", type=float, default=0.2)
    parser.add_argument("--engines", default="sql,numba,torch", help="featstore engines to time, comma-separated")
    parser.add_argument("--threads", default="1,2", help="thread counts to time each engine at, comma-separated")
    parser.add_argument("--no-scipy", action="store_true", help="featstore only (for sizes scipy cannot hold)")
    parser.add_argument("--dir", type=Path, help="warehouse folder to (re)use; default a temporary one")
    parser.add_argument("--name", default="correlate", help="the record's name (e.g. correlate_gpu_16384 for a GPU run's)")
    parser.add_argument("engine", nargs="?", choices=["sql", "numba", "torch", "scipy"], help=argparse.SUPPRESS)
    parser.add_argument("result", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parse_args(parser, smoke=dict(tokens=3_000, features=256, l0=10, planted=16, threads="1"))
    if args.engine == "scipy":
        print(json.dumps(run_scipy(args.dir, args.floor, args.result)))
        return
    if args.engine:
        print(json.dumps(run_featstore(args.dir, args.floor, args.engine, int(args.threads))))
        return

    load_start = os.getloadavg()
    figures, ratios = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp) / "warehouse"
        started = time.perf_counter()
        planted = build_warehouse(root, args)
        figures.update(build_seconds=time.perf_counter() - started, bytes_per_activation=bytes_per_activation(root),
                       activations=Warehouse(root).scalar("SELECT sum(n_rows) FROM activation_partitions"))
        print(f"data: {args.tokens:,} tokens x {args.features:,} features, L0 {args.l0}, {args.planted} planted matches; "
              f"written in {time.perf_counter() - started:.1f} s, {bytes_per_activation(root):.2f} bytes per stored activation")
        reference = Path(tmp) / "scipy.npz"
        for threads in [int(t) for t in args.threads.split(",")]:
            common = ("--dir", str(root), "--floor", str(args.floor), "--threads", str(threads), *sizes(args))
            theirs = None
            if not args.no_scipy:
                print(f"[threads {threads}, load average {load()}]")
                theirs = subprocess_json(*common, "scipy", str(reference), threads=threads)
                print(f"  scipy.sparse AᵀB + Pearson: {theirs['seconds']:.2f} s ({theirs['cpu_seconds']:.2f} s CPU; + {theirs['read_seconds']:.2f} s "
                      f"reading Parquet, + {theirs['best_match_seconds']:.2f} s best matches), peak RSS {theirs['peak_rss_gb']:.2f} GB, "
                      f"{theirs['n_cofiring_pairs']:,} co-firing pairs")
                figures.update(_prefixed(f"scipy_{threads}t", theirs))
            for engine in args.engines.split(","):
                ours = subprocess_json(*common, engine, threads=threads)
                print(f"  featstore correlate --engine {engine}: {ours['seconds']:.2f} s ({ours['cpu_seconds']:.2f} s CPU), peak RSS "
                      f"{ours['peak_rss_gb']:.2f} GB, {ours['n_cofiring_pairs']:,} co-firing pairs, {ours['n_pairs']:,} stored with r >= {args.floor}"
                      f" [load average {load()}]")
                figures.update(_prefixed(f"{engine}_{threads}t", ours))
                first = args.engines.split(",")[0]
                if engine != first:
                    ratios[f"{engine}_over_{first}_{threads}t_wall"] = ours["seconds"] / figures[f"{first}_{threads}t_seconds"]
                if theirs is None:
                    found = planted_found(Warehouse(root), Warehouse(root).scalar("SELECT max(id) FROM correlation_runs"), planted)
                    print(f"    planted matches found: {found['planted_found']} of {found['planted']}")
                    figures[f"{engine}_{threads}t_planted_found"] = found["planted_found"]
                    continue
                c = compare(root, reference, planted, args.floor)
                figures.update(_prefixed(f"{engine}_{threads}t", c))
                ratios[f"{engine}_over_scipy_{threads}t_wall"] = ours["seconds"] / theirs["seconds"]
                ratios[f"{engine}_over_scipy_{threads}t_cpu"] = ours["cpu_seconds"] / theirs["cpu_seconds"]
                print(f"    ratio {engine} / scipy: {ours['seconds'] / theirs['seconds']:.2f} wall, {ours['cpu_seconds'] / theirs['cpu_seconds']:.2f} CPU; "
                      f"pairs {c['pairs_featstore']:,} vs {c['pairs_scipy']:,}, differing {c['pairs_differing']}, max |Δr| "
                      f"{c['max_abs_dr_pairs']:.1e} (pairs) {c['max_abs_dr_best']:.1e} (best); best matches identical "
                      f"{c['best_matches_identical']:,} of {c['best_matches_total']:,}; planted found {c['planted_found']} of {c['planted']}")
        print(f"machine: {os.cpu_count()} cores, load average {load()} at the end")
    write_record(args.name, figures, ratios, settings_of(args, "engine", "result", "name"), args.out, load_start=load_start)


def sizes(args) -> tuple[str, ...]:
    """The data's sizes as flags, passed on to the engine subprocesses (which read the warehouse, not these)."""
    return ("--tokens", str(args.tokens), "--features", str(args.features), "--l0", str(args.l0),
            "--planted", str(args.planted), "--seed", str(args.seed))


def _prefixed(prefix: str, values: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in values.items()}


if __name__ == "__main__":
    main()
