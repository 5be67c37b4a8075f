"""Benchmark sharded ingest (N = 1, 2 processes on CPU) against a bare forward pass of the same model and SAE.

    python benchmarks/ingest_shards.py                     # tiny-preset shapes: hidden 128, MLP 512, 2048 features
    python benchmarks/ingest_shards.py --tokens 200000 --shards 1,2,4
    python benchmarks/ingest_shards.py --smoke             # 2,000 tokens of 400 documents, 1 repeat: about a minute (process start-up)

The bare forward is featstore's own capture and encode loop over the same windows (featstore.activations.ingest's
windows, batched, batch_activations, sae.encode, the act > 0 rows taken) with nothing written. Each
measurement runs in fresh processes with one torch thread each; sharded ingest with N processes is
timed from their start until the partition is published (by the last shard to finish), and
checked to give exactly the rows of N = 1. The figures and the ratios (ingest N / bare forward, in tokens/s)
go into a JSON record (benchmarks/record.py; docs/benchmarks/ingest_shards.json at full size).
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
from record import parse_args, settings_of, write_record  # noqa: E402

MODEL, SAE, CORPUS = "bench", "bench-sae", "bench-text"


def build(root: Path, args) -> None:
    """A random Mistral of the tiny preset's shape, a random SAE, a generated corpus of --tokens tokens."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from featstore.models.capture import mlp_activations
    from featstore.models.catalog import register_model
    from featstore.saes import build_sae, save_sae
    from featstore.saes.catalog import register_sae
    from featstore.text.mixtures import iter_texts
    from featstore.text.slices import add_corpus_texts
    from featstore.text.tokenizer import train_bpe
    from featstore.warehouse import Warehouse

    texts = list(iter_texts(f"generated:stories?docs={args.docs}"))
    tokenizer = train_bpe(texts[:500], vocab_size=2048, out_dir=root / "tokenizer")
    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=512, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    MistralForCausalLM(config).save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    wh = Warehouse(root / "wh")
    register_model(wh, MODEL, root / "model", kind="base")
    sae = build_sae("relu", d_in=512, d_sae=2048, model_name=MODEL)
    model = MistralForCausalLM.from_pretrained(root / "model")
    with torch.no_grad():  # each feature fires on ~1.5 % of tokens (L0 ~ 30), as a trained SAE's would
        ids = torch.as_tensor(tokenizer(" ".join(texts[:20]))["input_ids"][:2048])[None]
        sample = mlp_activations(model, ids, 0)[0]
        sae.b_enc.sub_(torch.quantile((sample - sae.b_dec) @ sae.W_enc, 0.985, dim=0))
    register_sae(wh, SAE, MODEL, save_sae(sae, root / "sae"), hook_point="blocks.0.mlp.hook_post", layer=0, d_in=512,
                 d_sae=2048, architecture="relu")
    add_corpus_texts(wh, CORPUS, ((f"doc{i}", t) for i, t in enumerate(texts)), root / "model", source_label="generated:stories",
                     max_tokens=args.tokens)


def bare_forward(root: Path, batch_size: int) -> dict:
    """The same windows through the model and SAE, rows extracted to CPU, nothing written (model loading timed, as in ingest)."""
    import torch

    from featstore.activations.ingest import windows
    from featstore.models.capture import batch_activations
    from featstore.models.hf import load_model
    from featstore.saes import load_sae
    from featstore.saes.catalog import get_sae
    from featstore.text.slices import batched
    from featstore.warehouse import Warehouse

    started, tokens, n_rows = time.perf_counter(), 0, 0
    wh = Warehouse(root / "wh")
    device = torch.device("cpu")
    model, sae = load_model(str(root / "model"), device), load_sae(get_sae(wh, SAE)["path"], device)
    with torch.no_grad():
        for batch in batched(windows(wh, CORPUS, 256), batch_size):
            x = batch_activations(model, [torch.as_tensor(ids.astype("int64")) for _, ids in batch], 0, device)
            feats = sae.encode(x)
            rows, features = torch.nonzero(feats > 0, as_tuple=True)
            n_rows += feats[rows, features].numpy().size
            tokens += len(x)
    return {"seconds": time.perf_counter() - started, "tokens": tokens, "rows": n_rows}


def run(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, __file__, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> dict:
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a benchmark process failed:\n{err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def sharded(root: Path, n: int, batch_size: int) -> dict:
    """N shard processes side by side; timed from the first ingest call to the last return (the publish), imports excluded."""
    results = [finished(p) for p in [run("--dir", str(root), "shard", f"{i}/{n}", str(batch_size)) for i in range(n)]]
    return {"seconds": max(r["ended"] for r in results) - min(r["started"] for r in results), "results": results}


def ingest_shard(root: Path, spec: str, batch_size: int) -> dict:
    import torch

    from featstore.activations.ingest import ingest
    from featstore.activations.shards import parse_shard
    from featstore.warehouse import Warehouse

    torch.set_num_threads(1)
    shard = parse_shard(spec)
    started = time.time()
    done = ingest(Warehouse(root / "wh"), MODEL, corpus=CORPUS, batch_size=batch_size, device="cpu", progress=False,
                  shard=None if shard[1] == 1 else shard)
    return {"rows": done["rows"], "path": done["path"], "published": done.get("published", True), "started": started,
            "ended": time.time()}


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--docs", type=int, default=4000, help="generated stories to draw the corpus (and the BPE) from")
    parser.add_argument("--shards", default="1,2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each, interleaved; medians compared")
    parser.add_argument("task", nargs="?", choices=["bare", "shard"], help=argparse.SUPPRESS)
    parser.add_argument("task_args", nargs="*", help=argparse.SUPPRESS)
    args = parse_args(parser, smoke=dict(tokens=2_000, docs=400, repeats=1))
    if args.task == "bare":
        import torch

        torch.set_num_threads(1)
        print(json.dumps(bare_forward(args.dir, int(args.task_args[0]))))
        return
    if args.task == "shard":
        print(json.dumps(ingest_shard(args.dir, args.task_args[0], int(args.task_args[1]))))
        return
    load_start = os.getloadavg()
    figures, ratios = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        started = time.perf_counter()
        build(root, args)
        from featstore.warehouse import Warehouse

        tokens = Warehouse(root / "wh").scalar("SELECT n_tokens FROM corpora WHERE name = ?", [CORPUS])  # the generator may run short of --tokens
        figures.update(tokens=tokens, build_seconds=time.perf_counter() - started)
        print(f"data: {tokens:,} tokens, hidden 128 / MLP 512 -> 2048 features; built in {time.perf_counter() - started:.0f} s")
        shards, reference = [int(s) for s in args.shards.split(",")], None
        bare_seconds, seconds = [], {n: [] for n in shards}
        for repeat in range(args.repeats):  # interleaved, so a change in the machine's load hits every measurement
            bare = finished(run("--dir", str(root), "bare", str(args.batch_size)))
            bare_seconds.append(bare["seconds"])
            print(f"[{repeat + 1}/{args.repeats}] bare forward (1 process, 1 thread): {bare['tokens'] / bare['seconds']:,.0f} "
                  f"tokens/s ({bare['seconds']:.1f} s, {bare['rows']:,} rows) [load average {load()}]")
            for n in shards:
                done = sharded(root, n, args.batch_size)
                published = [r for r in done["results"] if r["published"]]
                rows = _rows(published[0]["path"])
                reference = reference or rows
                seconds[n].append(done["seconds"])
                print(f"[{repeat + 1}/{args.repeats}] ingest N={n} ({n} processes, 1 thread each): {tokens / done['seconds']:,.0f} "
                      f"tokens/s ({done['seconds']:.1f} s to publish); rows identical to N=1: {rows == reference} [load average {load()}]")
                same = f"ingest_n{n}_rows_identical_to_n1"  # 1 when every repeat gave N=1's rows
                figures[same] = int(figures.get(same, 1) == 1 and rows == reference)
            figures["bare_rows"] = bare["rows"]
        bare_rate = tokens / statistics.median(bare_seconds)
        print(f"medians of {args.repeats}: bare forward {bare_rate:,.0f} tokens/s")
        figures.update(bare_median_seconds=statistics.median(bare_seconds), bare_tokens_per_s=bare_rate, rows=len(reference))
        for n in shards:
            rate = tokens / statistics.median(seconds[n])
            print(f"  ingest N={n}: {rate:,.0f} tokens/s, {rate / bare_rate:.2f}x the bare forward, {rate / (n * bare_rate):.2f} of N bare forwards")
            figures.update({f"ingest_n{n}_median_seconds": statistics.median(seconds[n]), f"ingest_n{n}_tokens_per_s": rate})
            ratios.update({f"ingest_n{n}_over_bare_tokens_per_s": rate / bare_rate,
                           f"ingest_n{n}_over_n_bare_tokens_per_s": rate / (n * bare_rate)})
        print(f"machine: {os.cpu_count()} cores, load average {load()} at the end")
    write_record("ingest_shards", figures, ratios, settings_of(args, "task", "task_args"), args.out, load_start=load_start)


def _rows(path: str) -> list:
    """The rows of a published partition: its one file, or the part files its glob matches."""
    import glob

    import pyarrow.parquet as pq

    table = pq.read_table(sorted(glob.glob(path)))
    return sorted(zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))))


if __name__ == "__main__":
    main()
