"""Wall-clock time of the whole tiny family: base, two fine-tunes, SLERP merge (and optionally the sweep).

Each stage runs through the library exactly as the CLI does, into a fresh warehouse. As a reference
measured in the same run, a plain PyTorch loop does training steps of the same model shape on random
tokens first, so the family's figures can be read against what the machine gave at that moment
(the CPU is shared; the load average is printed too).

    python benchmarks/train_family.py                      # tiny preset, CPU or GPU
    python benchmarks/train_family.py --preset paper --sweep-steps 11
    python benchmarks/train_family.py --smoke               # tiny preset cut to a few thousand tokens: seconds

The figures and the ratios (each training stage's tokens/s over the reference's) go into a JSON record
(benchmarks/record.py; docs/benchmarks/train_family.json at full size).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.models import lm  # noqa: E402
from featstore.models.hf import resolve_device  # noqa: E402
from featstore.models.merge import merge_models, merge_sweep  # noqa: E402
from featstore.models.presets import ModelPreset, model_preset  # noqa: E402
from featstore.warehouse import Warehouse  # noqa: E402


def reference_tokens_per_s(preset: ModelPreset, device: torch.device, steps: int = 4) -> float:
    """Plain AdamW steps of the preset's shape on random tokens: the raw training speed right now.

    On a CPU the batch is cut to 4 blocks so the reference costs seconds, not minutes, at paper size.
    """

    class Vocab:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, None

        def __len__(self) -> int:
            return preset.vocab_size

    model = lm.new_model(preset, Vocab(), seed=0).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n_blocks = preset.base.batch_size if device.type == "cuda" else min(4, preset.base.batch_size)
    batch = torch.randint(0, preset.vocab_size, (n_blocks, preset.block_size), device=device)
    for step in range(steps + 1):
        if step == 1:  # one warm-up step
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with lm.autocast(device):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch.numel() / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--warehouse", default=None, help="[default: a fresh temporary folder]")
    parser.add_argument("--device", default=None)
    parser.add_argument("--tokenizer", default=None, help="Override the preset's tokenizer (e.g. a SentencePiece .model file).")
    parser.add_argument("--base-tokens", type=int, default=None)
    parser.add_argument("--finetune-tokens", type=int, default=None)
    parser.add_argument("--eval-tokens", type=int, default=None, help="Validation tokens per domain [default: the preset's].")
    parser.add_argument("--sweep-steps", type=int, default=0, help="Also run the merge sweep with this many t.")
    parser.add_argument("--vocab-size", type=int, default=None, help="Override the preset's BPE vocabulary size.")
    parser.add_argument("--tokenizer-chars", type=int, default=None, help="Override the preset's BPE training text per corpus.")
    args = parse_args(parser, smoke=dict(base_tokens=4096, finetune_tokens=2048, eval_tokens=1024, vocab_size=512,
                                         tokenizer_chars=50_000))

    overrides = {"eval_tokens": args.eval_tokens, "vocab_size": args.vocab_size, "tokenizer_chars": args.tokenizer_chars}
    preset = model_preset(args.preset, **{k: v for k, v in overrides.items() if v})
    device = resolve_device(args.device)
    load_start = os.getloadavg()
    wh = Warehouse(args.warehouse or tempfile.mkdtemp(prefix="featstore-family-"))
    print(f"preset {preset.name} on {device}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, warehouse {wh.root}")
    reference = reference_tokens_per_s(preset, device)
    print(f"reference: plain training loop of the same shape {reference:,.0f} tokens/s")
    figures, ratios = {"reference_tokens_per_s": reference}, {}

    stages = [
        ("train base", lambda: lm.train_base(wh, "base", preset=preset, tokenizer=args.tokenizer, device=args.device,
                                             max_tokens=args.base_tokens)),
        ("finetune lua", lambda: lm.finetune(wh, "lua", parent="base", device=args.device, max_tokens=args.finetune_tokens)),
        ("finetune tinystories", lambda: lm.finetune(wh, "tinystories", parent="base", device=args.device,
                                                     max_tokens=args.finetune_tokens)),
        ("merge luastories", lambda: merge_models(wh, "lua", "tinystories", name="luastories", t=0.58, device=args.device)),
    ]
    if args.sweep_steps:
        stages.append(("merge sweep", lambda: merge_sweep(wh, "lua", "tinystories", steps=args.sweep_steps,
                                                          device=args.device)))
    total, results = 0.0, {}
    for label, run in stages:
        start = time.perf_counter()
        results[label] = run()
        seconds = time.perf_counter() - start
        total += seconds
        train = results[label].get("metrics", {}).get("train") if isinstance(results[label], dict) else None
        speed = f", training {train['tokens']:,} tokens at {train['tokens_per_s']:,} tokens/s" if train else ""
        print(f"{label:22s} {seconds:7.1f} s{speed}")
        key = label.replace(" ", "_")
        figures[f"{key}_seconds"] = seconds
        if train:
            figures.update({f"{key}_train_tokens": train["tokens"], f"{key}_train_tokens_per_s": train["tokens_per_s"]})
            ratios[f"{key}_over_reference_tokens_per_s"] = train["tokens_per_s"] / reference
    print(f"{'family total':22s} {total:7.1f} s ({total / 60:.1f} min), load average now {os.getloadavg()[0]:.1f}")
    figures["family_total_seconds"] = total
    for name in ("lua", "tinystories"):
        for line in lm.finetune_findings(wh, name, "base"):
            print(line)
    print(wh.query("SELECT model, domain, val_loss, val_accuracy FROM model_validation").to_pandas().to_string(index=False))
    if args.sweep_steps:
        sweep = results["merge sweep"]
        print(f"monotone: {sweep['monotone']}; plot {sweep['plot']}")
        print(wh.query("SELECT t, evaluated, eval_set, loss, accuracy FROM merge_sweep ORDER BY eval_set, t NULLS FIRST")
              .to_pandas().to_string(index=False))
        figures["merge_sweep_monotone"] = int(bool(sweep["monotone"]))
    for row in wh.query("SELECT model, domain, val_loss, val_accuracy FROM model_validation").to_pylist():
        figures[f"{row['model']}_{row['domain']}_val_loss"] = row["val_loss"]
        figures[f"{row['model']}_{row['domain']}_val_accuracy"] = row["val_accuracy"]
    write_record("train_family", figures, ratios, {**settings_of(args), "device_used": str(device), "preset_used": preset.name},
                 args.out, load_start=load_start)
    if args.smoke and args.warehouse is None:  # a smoke run's temporary warehouse (a full run's is kept to look at)
        shutil.rmtree(wh.root, ignore_errors=True)


if __name__ == "__main__":
    main()
