"""Which training budgets make real data teach: validation accuracy of candidate families on the real corpora.

For each candidate (a model shape, vocabulary and token budgets over the tiny family) it trains a BPE
and a base on real Python + English, fine-tunes copies of the base on real Lua and on real English,
and measures every model on the validation part of each domain, with the seconds each stage took.
The corpora are those `featstore corpus debian` builds (featstore/text/debian.py). As a reference
measured in the same run, each candidate's raw training speed on random tokens is measured first
(benchmarks/train_family.py), so the seconds can be read against what the machine gave at that moment.

    python benchmarks/real_budgets.py                            # every candidate
    python benchmarks/real_budgets.py --candidates real           # one
    python benchmarks/real_budgets.py --smoke                     # micro budgets: seconds

The record (benchmarks/record.py) goes to docs/benchmarks/real_budgets.json at full size.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record
from train_family import reference_tokens_per_s

from featstore.models import lm
from featstore.models.hf import resolve_device
from featstore.models.presets import MODEL_PRESETS, Schedule, model_preset, real_specs
from featstore.text.debian import DEFAULT_OUT
from featstore.text.mixtures import iter_texts

# Candidates over the tiny family: (shape and vocabulary overrides, base tokens, fine-tune tokens).
CANDIDATES = {
    "tiny": ({}, 500_000, 125_000),
    "tiny-4k": ({"vocab_size": 4096}, 2_150_000, 1_000_000),
    "tiny-2k": ({"vocab_size": 2048}, 2_150_000, 1_000_000),
    "tiny-1k": ({"vocab_size": 1024}, 2_150_000, 1_000_000),
    "real-4k": ({"real": True, "vocab_size": 4096, "intermediate_size": 1024}, 6_000_000, 2_000_000),
    "real": ({"real": True}, None, None),  # the shipped `real` preset, as it is
}
EVAL_TOKENS = MODEL_PRESETS["real"].eval_tokens  # every candidate measured on the same validation tokens
# --smoke without the real corpora: the standard library and the built-in generators stand in
SMOKE_SPECS = ({"base": "python-stdlib=0.5+generated:childes?docs=200=0.5", "lua": "generated:lua?docs=100",
                "english": "generated:childes?docs=200"},
               {"python": "python-stdlib", "english": "generated:childes?docs=200", "lua": "generated:lua?docs=100"})


def candidate_preset(name: str, corpora: Path, base_tokens: int | None, finetune_tokens: int | None):
    overrides, base, tune = CANDIDATES[name]
    changes = {k: v for k, v in overrides.items() if k != "real"}
    preset = model_preset("real" if overrides.get("real") else "tiny", **changes)
    base = base_tokens or base or preset.base.max_tokens
    tune = finetune_tokens or tune or preset.finetune.max_tokens
    corpora_, domains = real_specs(str(corpora)) if corpora.expanduser().is_dir() else SMOKE_SPECS
    return replace(preset, base=replace(preset.base, max_tokens=base), finetune=replace(preset.finetune, max_tokens=tune),
                   corpora=corpora_, domains=domains, eval_tokens=EVAL_TOKENS)


def train(model, tok, preset, spec: str, schedule: Schedule, device, label: str) -> dict:
    texts = iter_texts(spec, part="train", seed=0)
    blocks = lm.pack_blocks(texts, tok, preset.block_size, schedule.max_tokens // schedule.epochs, desc=f"{label} data")
    run = lm.train_lm(model, blocks, schedule, device=device, seed=0, desc=label)
    scores = lm.evaluate_domains(model, tok, preset.domains, block_size=preset.block_size,
                                 eval_tokens=preset.eval_tokens, device=device)
    bits = {domain: round(loss / math.log(2) / bytes_per_token(tok, preset, preset.domains[domain]), 4)
            for domain, loss in scores["val_loss"].items()}
    return {"seconds": run["seconds"], "tokens": run["tokens"], "tokens_per_s": run["tokens_per_s"], **scores,
            "val_bits_per_byte": bits}


def bytes_per_token(tok, preset, spec: str) -> float:
    """UTF-8 bytes per token of a domain's validation blocks: turns a loss per token into bits per byte,
    which compares across vocabularies (a smaller vocabulary makes each token easier to guess)."""
    blocks = lm.validation_blocks(spec, tok, preset.block_size, preset.eval_tokens)
    return sum(len(tok.decode(block).encode()) for block in blocks.tolist()) / blocks.numel()


def measure(name: str, preset, device) -> tuple[dict, dict]:
    figures, ratios = {}, {}
    reference = reference_tokens_per_s(preset, device)
    figures[f"{name}_reference_tokens_per_s"] = round(reference)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tok_dir:
        tok = lm.family_tokenizer(preset, "bpe", Path(tok_dir), corpora=list(preset.corpora.values()))
    figures[f"{name}_tokenizer_seconds"] = round(time.perf_counter() - start, 2)
    base = lm.new_model(preset, tok, seed=0)
    runs = {"base": train(base, tok, preset, preset.corpora["base"], preset.base, device, f"{name} base")}
    report(name, "base", runs["base"])
    for child in ("lua", "english"):
        model = copy.deepcopy(base)
        runs[child] = train(model, tok, preset, preset.corpora[child], preset.finetune, device, f"{name} {child}")
        report(name, child, runs[child])
    for model, run in runs.items():
        figures[f"{name}_{model}_seconds"] = run["seconds"]
        figures[f"{name}_{model}_tokens"] = run["tokens"]
        ratios[f"{name}_{model}_over_reference_tokens_per_s"] = round(run["tokens_per_s"] / reference, 3)
        for domain, accuracy in run["val_accuracy"].items():
            figures[f"{name}_{model}_{domain}_val_accuracy"] = accuracy
            figures[f"{name}_{model}_{domain}_val_loss"] = run["val_loss"][domain]
            figures[f"{name}_{model}_{domain}_val_bits_per_byte"] = run["val_bits_per_byte"][domain]
    return figures, ratios


def report(name: str, model: str, run: dict) -> None:
    print(f"{name:10s} {model:8s} {run['tokens']:>10,} tok {run['seconds']:7.1f} s  accuracy "
          + "  ".join(f"{d} {a:.3f} ({run['val_bits_per_byte'][d]:.2f} bits/byte)" for d, a in run["val_accuracy"].items()),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_OUT, help="folder `featstore corpus debian` wrote")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    parser.add_argument("--base-tokens", type=int, default=None, help="override every candidate's base budget")
    parser.add_argument("--finetune-tokens", type=int, default=None, help="override every candidate's fine-tune budget")
    parser.add_argument("--device", default=None)
    args = parse_args(parser, smoke={"candidates": "tiny", "base_tokens": 20_000, "finetune_tokens": 10_000})
    corpora = args.corpora  # as spelt: the validation shuffle is seeded by the source string, as in real-lua.toml
    if not corpora.expanduser().is_dir() and not args.smoke:
        parser.error(f"{corpora} does not exist; build it first with `featstore corpus debian`")
    device = resolve_device(args.device)
    figures, ratios = {}, {}
    for name in args.candidates.split(","):
        preset = candidate_preset(name, corpora, args.base_tokens, args.finetune_tokens)
        if args.smoke:
            preset = replace(preset, eval_tokens=2048, tokenizer_chars=200_000)
        f, r = measure(name, preset, device)
        figures.update(f)
        ratios.update(r)
    write_record("real_budgets", figures, ratios, {**settings_of(args), "device_used": str(device)}, args.out)


if __name__ == "__main__":
    main()
