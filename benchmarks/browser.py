"""Feature-page latency of `featstore serve` against the same page's SQL queries run alone.

Builds a synthetic warehouse of the issue's size (a base model and two fine-tunes, one SAE of 16,384
features each, two 120,000-token corpus slices, ~20 active features per token, best matches for
every edge and slice, explanations, SAE weights for decoder neighbours), starts `featstore serve` on
a free loopback port, requests random feature pages over HTTP, and prints median and p95. The
reference runs, for some of those features, the SQL a user would type for the same content
(explanations, matches, top_contexts per slice and per match, firing statistics, the activation
histogram, feature families) on a fresh read-only connection, as a page without the index would.

    python benchmarks/browser.py                      # 100 pages, 20 SQL references
    python benchmarks/browser.py --pages 30 --keep /tmp/bench-wh
    python benchmarks/browser.py --smoke              # 256 features x 2,000 tokens, 5 pages: seconds

The figures and the ratio page / SQL go into a JSON record (benchmarks/record.py;
docs/benchmarks/browser.json at full size).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.warehouse import Warehouse  # noqa: E402

MODELS = {"base": None, "lua": "base", "stories": "base"}
SLICES = ("eval-lua", "eval-stories")


def build(root: Path, features: int, tokens: int, active: int, d_in: int, seed: int = 0) -> Warehouse:
    """The synthetic warehouse (catalog rows written with SQL, partitions with write_partition)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    wh = Warehouse(root)
    vocab = [f" w{i}" if i % 7 else f"\n{i}" for i in range(8192)]
    with wh.transaction() as con:
        con.execute("INSERT INTO tokenizers VALUES ('fp', 'bench', ?, current_timestamp)", [len(vocab)])
        con.register("v", pa.table({"i": np.arange(len(vocab), dtype=np.int32), "t": vocab}))
        con.execute("INSERT INTO vocab SELECT 'fp', i, t, t FROM v")
        for n, corpus in enumerate(SLICES):
            con.execute("INSERT INTO corpora VALUES (?, 'synthetic', 'fp', ?, ?, ?, NULL, current_timestamp)",
                        [corpus, tokens // 200, tokens, n * tokens])
            con.execute("INSERT INTO tokens SELECT ? + i, ?, i // 200, i % 200, hash(i, ?) % 8192 FROM range(?) r(i)",
                        [n * tokens, corpus, n, tokens])
        for name, parent in MODELS.items():
            con.execute("INSERT INTO models (name, kind, path, tokenizer) VALUES (?, ?, ?, 'fp')",
                        [name, "finetune" if parent else "base", f"/m/{name}"])
            if parent:
                con.execute("INSERT INTO lineage VALUES (?, ?, 'finetune', 0, NULL, NULL)", [parent, name])
            folder = root / "saes" / name
            folder.mkdir(parents=True)
            w_dec = rng.standard_normal((features, d_in), dtype=np.float32)
            save_file({"W_dec": w_dec}, str(folder / "sae_weights.safetensors"))
            con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, path, metrics)"
                        " VALUES (?, ?, 'blocks.0.mlp.hook_post', 0, ?, ?, 'relu', ?, ?)",
                        [f"{name}-sae", name, d_in, features, str(folder), json.dumps({"fvu": 0.1, "l0": active})])
        run_id = 0
        for name, parent in MODELS.items():
            if not parent:
                continue
            for corpus in SLICES:
                run_id += 1
                con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                            " VALUES (?, ?, ?, ?, 'all_tokens', 0.2, ?, 0)", [run_id, f"{parent}-sae", f"{name}-sae", corpus, tokens])
                con.execute("INSERT INTO best_matches SELECT ?, side, f, (f * 7 + ?) % ?, 0.3 + 0.69 * (hash(f, ?, side) % 1000) / 1000"
                            " FROM range(?) r(f), (VALUES ('a'), ('b')) s(side)", [run_id, run_id, features, run_id, features])
        con.execute("INSERT INTO explanations SELECT m.sae, 'eval-lua', f, 'builtin', 'v1', 'This feature looks mainly for \"w' || f || '\".', 20, 0, 0, current_timestamp"
                    " FROM range(0, ?, 8) r(f), (SELECT id AS sae FROM saes) m", [features])
        con.execute("INSERT INTO scores SELECT row_number() OVER (), sae, corpus, feature, 'self', sae, feature, 'builtin', 'v1',"
                    " 'builtin', 'v1', (hash(feature) % 100) / 100, 40, 0, 0, current_timestamp FROM explanations")
    popularity = np.exp(rng.uniform(-9, 0, features))
    popularity /= popularity.sum()
    for n, corpus in enumerate(SLICES):
        for name in MODELS:
            feats = rng.choice(features, size=(tokens, active), p=popularity).astype(np.uint32)
            toks = np.repeat(np.arange(n * tokens, (n + 1) * tokens, dtype=np.uint32), active)
            keys = np.unique(toks.astype(np.uint64) * features + feats.ravel())
            table = pa.table({"tok": (keys // features).astype(np.uint32), "feature": (keys % features).astype(np.uint32),
                              "act": rng.exponential(1.0, len(keys)).astype(np.float32) + 0.01})
            wh.write_partition(f"{name}-sae", corpus, [table], n_tokens=tokens, origin="import")
    return wh


def sql_reference(wh: Warehouse, sae: str, feature: int) -> None:
    """The same content as a feature page, by plain SQL on a fresh read-only connection."""
    import duckdb

    con = duckdb.connect(str(wh.db_path), read_only=True)
    try:
        con.execute("SELECT * FROM feature_explanations WHERE sae = ? AND feature = ?", [sae, feature]).fetchall()
        matches = con.execute("SELECT match_sae, match, corpus FROM feature_matches WHERE sae = ? AND feature = ?",
                              [sae, feature]).fetchall()
        for corpus in SLICES:
            con.execute("SELECT * FROM top_contexts(?, ?, corpus_name := ?, n := 8)", [sae, feature, corpus]).fetchall()
            con.execute("SELECT count(*), avg(act), max(act), histogram(floor(act * 4) / 4) FROM activations"
                        " WHERE sae = ? AND corpus = ? AND feature = ?", [sae, corpus, feature]).fetchall()
        for match_sae, match, corpus in matches:
            con.execute("SELECT * FROM top_contexts(?, ?, corpus_name := ?, n := 3)", [match_sae, match, corpus]).fetchall()
        model = sae.removesuffix("-sae")
        con.execute("SELECT * FROM feature_families WHERE family IN (SELECT family FROM feature_families"
                    " WHERE model = ? AND feature = ?)", [model, feature]).fetchall()
    finally:
        con.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=16_384)
    parser.add_argument("--tokens", type=int, default=120_000)
    parser.add_argument("--active", type=int, default=20)
    parser.add_argument("--d-in", type=int, default=1024)
    parser.add_argument("--pages", type=int, default=100)
    parser.add_argument("--sql-pages", type=int, default=20)
    parser.add_argument("--keep", type=Path, default=None, help="build (or reuse) the warehouse here")
    args = parse_args(parser, smoke=dict(features=256, tokens=2_000, active=5, d_in=32, pages=5, sql_pages=3))

    load_start = os.getloadavg()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in load_start)}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="featstore-bench-")) / "wh"
    figures = {}
    if not (root / "featstore.duckdb").exists():
        start = time.perf_counter()
        build(root, args.features, args.tokens, args.active, args.d_in)
        figures["build_seconds"] = time.perf_counter() - start
        print(f"built {root} in {figures['build_seconds']:.1f} s")
    wh = Warehouse(root)
    rows = wh.scalar("SELECT sum(n_rows) FROM activation_partitions")
    print(f"{len(MODELS)} SAEs x {args.features} features, {len(SLICES)} slices x {args.tokens} tokens, {rows:,} activations")

    port = free_port()
    server = subprocess.Popen([sys.executable, "cli.py", "--warehouse", str(root), "serve", "--port", str(port)],
                              cwd=Path(__file__).resolve().parent.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        print(server.stdout.readline().strip())
        rng = random.Random(0)
        picks = [(f"{rng.choice(list(MODELS))}-sae", rng.randrange(args.features)) for _ in range(args.pages)]
        wait_until_up(port)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/sae/base-sae/feature/0").read()  # first request: snapshot
        page_times = []
        for sae, feature in picks:
            start = time.perf_counter()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/sae/{sae}/feature/{feature}") as response:
                body = response.read()
            page_times.append(time.perf_counter() - start)
            assert response.status == 200 and b"Top activations" in body
    finally:
        server.terminate()
        server.wait()
    sql_times = []
    for sae, feature in picks[: args.sql_pages]:
        start = time.perf_counter()
        sql_reference(wh, sae, feature)
        sql_times.append(time.perf_counter() - start)

    def p95(values):
        return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]

    page_median, sql_median = statistics.median(page_times), statistics.median(sql_times)
    print(f"feature page over HTTP ({len(page_times)} pages): median {1000 * page_median:.0f} ms, p95 {1000 * p95(page_times):.0f} ms")
    print(f"same content by SQL ({len(sql_times)} pages): median {1000 * sql_median:.0f} ms, p95 {1000 * p95(sql_times):.0f} ms")
    print(f"ratio page / SQL (medians): {page_median / sql_median:.3f}")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    figures.update(activations=rows, pages=len(page_times), page_median_ms=1000 * page_median, page_p95_ms=1000 * p95(page_times),
                   sql_pages=len(sql_times), sql_median_ms=1000 * sql_median, sql_p95_ms=1000 * p95(sql_times))
    write_record("browser", figures, {"page_over_sql_median": page_median / sql_median}, settings_of(args), args.out,
                 load_start=load_start)
    if args.keep is None:  # the temporary warehouse (--keep's is kept)
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
