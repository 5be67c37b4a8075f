"""The model zoo: Mistral-architecture LMs, training, fine-tuning and evaluation.

The paper's family is a base model trained on about half English, half Python (BabyPython), two
fine-tunes of it (Lua, TinyStories) and a SLERP merge of those (`featstore.models.merge`). A preset fixes
the architecture, the tokenizer, the corpora (as `featstore.text.mixtures` spec strings) and the schedules;
`tiny` trains the whole family on two CPU cores in minutes, `paper` has the paper's shapes and
optimiser settings with token budgets that fit a GPU in minutes.

Every model is evaluated on the validation part of each domain of its family, and the loss and
next-token accuracy per domain go to the warehouse `models.metrics` (see the `model_validation` view).
Model folders are written under a temporary name and renamed into place only when complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from featstore.errors import FeatstoreError
from featstore.models.hf import load_model, resolve_device
from featstore.models.presets import BASE, ModelPreset, Schedule, model_preset
from featstore.text.mixtures import iter_texts
from featstore.warehouse import Warehouse, check_name

# -- tokenizers ---------------------------------------------------------------------------------


def tokenizer_corpora(preset: ModelPreset, base_corpus: str, corpora: Sequence[str] | None = None) -> list[str]:
    """What a trained BPE sees: `corpora` when given, else the base corpus and every corpus of the
    preset's family (`preset.corpora`), so every family member tokenizes well."""
    return list(dict.fromkeys(corpora or [base_corpus, *preset.corpora.values()]))


def family_tokenizer(preset: ModelPreset, tokenizer: str | None, out_dir: Path, *, corpora: Sequence[str], seed: int = 0):
    """The tokenizer the whole family shares: a BPE trained on `corpora`, Mistral's, a SentencePiece
    file, an HF folder or hub id."""
    from featstore.text.tokenizer import (
        load_mistral_tokenizer,
        load_sentencepiece_bpe,
        load_tokenizer,
        train_bpe,
    )

    choice = tokenizer or preset.tokenizer
    if choice == "bpe":
        specs = corpora
        texts = (t for spec in specs for t in _sample_texts(spec, preset.tokenizer_chars, seed))
        return train_bpe(tqdm(texts, desc="tokenizer sample", unit="doc"), preset.vocab_size, out_dir)
    if choice == "mistral":
        return load_mistral_tokenizer()
    if Path(choice).is_file():  # a single file is a SentencePiece model; tokenizer folders are directories
        return load_sentencepiece_bpe(choice)
    return load_tokenizer(choice)


def corpus_label(spec: str) -> str:
    """A short domain name for a corpus spec: a file or folder's stem, a generator's kind, a hub id's name."""
    from featstore.text.mixtures import parse_spec

    names = []
    for c in parse_spec(spec):
        source = c.source.split(":", 1)[1] if c.source.startswith(("generated:", "hf:")) else c.source
        names.append(Path(source.split("?")[0].split(":")[0].rstrip("/*")).stem or source)
    return "+".join(names)


def preset_for_corpus(wh: Warehouse, name: str, corpus: str, *, preset: str | ModelPreset | None = None,
                      parent: str | None = None) -> ModelPreset:
    """The preset of a model trained by hand on a corpus of one's own (`train` / `finetune --corpus`):
    a trained BPE sees that corpus only, and the model is measured on its validation part, named after
    it, beside the parent's domains (so child and parent compare on the same data)."""
    from featstore.models.catalog import get_model

    if preset is None and parent is None:
        raise FeatstoreError("preset_for_corpus needs a preset or a parent model")
    base = model_preset(preset) if preset is not None else _parent_preset(get_model(wh, parent))
    domains = dict(base.domains) if parent is not None else {}
    return replace(base, corpora={name: corpus}, domains={**domains, corpus_label(corpus): corpus})


def _sample_texts(spec: str, max_chars: int, seed: int) -> Iterable[str]:
    chars = 0
    for text in iter_texts(spec, part="train", seed=seed):
        yield text
        chars += len(text)
        if chars >= max_chars:
            return


def probe_corpus(spec: str, seed: int = 0) -> None:
    """Fail fast, before any training, when a corpus spec is malformed, missing or empty."""
    next(iter_texts(spec, part="train", seed=seed))


# -- data ---------------------------------------------------------------------------------------


def pack_blocks(texts: Iterable[str], tokenizer, block_size: int, max_tokens: int, desc: str) -> torch.Tensor:
    """Documents tokenized, joined by EOS and cut into (n_blocks, block_size) until max_tokens."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    with tqdm(total=max_tokens, desc=desc, unit="tok", unit_scale=True) as bar:
        for text in texts:
            piece = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
            bar.update(min(len(piece), max_tokens - len(ids)))
            ids.extend(piece)
            if len(ids) >= max_tokens:
                break
    n_blocks = min(len(ids), max_tokens) // block_size
    if n_blocks == 0:
        raise FeatstoreError(f"{desc}: only {len(ids)} tokens, fewer than one {block_size}-token block; give more text")
    return torch.tensor(ids[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)


_validation_cache: dict[tuple, torch.Tensor] = {}


def validation_blocks(spec: str, tokenizer, block_size: int, max_tokens: int, seed: int = 0) -> torch.Tensor:
    """Validation blocks of a spec, cached per process (a merge sweep evaluates them many times)."""
    from featstore.text.tokenizer import fingerprint

    key = (spec, fingerprint(tokenizer), block_size, max_tokens, seed)
    if key not in _validation_cache:
        texts = iter_texts(spec, part="validation", seed=seed)
        _validation_cache[key] = pack_blocks(texts, tokenizer, block_size, max_tokens, desc=f"validation {spec}")
    return _validation_cache[key]


# -- models -------------------------------------------------------------------------------------


def new_model(preset: ModelPreset, tokenizer, seed: int):
    """A freshly initialised MistralForCausalLM of the preset's shape for `tokenizer`."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        num_hidden_layers=preset.num_hidden_layers,
        num_attention_heads=preset.num_attention_heads,
        num_key_value_heads=preset.num_key_value_heads,
        max_position_embeddings=preset.max_position_embeddings,
        rope_theta=preset.rope_theta,
        sliding_window=None,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    return MistralForCausalLM(config)


def autocast(device: torch.device):
    """bf16 autocast on CUDA; plain fp32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def train_lm(model, blocks: torch.Tensor, schedule: Schedule, *, device: torch.device, seed: int, desc: str) -> dict:
    """AdamW with warmup then cosine decay, gradient clipping, shuffled blocks; returns run statistics.

    Weight decay applies to matrices only (not norms), as usual for transformers.
    """
    from transformers import get_cosine_schedule_with_warmup

    model.to(device).train()
    block_size = blocks.shape[1]
    steps_per_epoch = max(1, len(blocks) // schedule.batch_size)
    total_steps = steps_per_epoch * schedule.epochs
    warmup = min(schedule.warmup_steps, total_steps // 5)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": schedule.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=schedule.lr, fused=device.type == "cuda")
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    start, loss_value, tokens = time.perf_counter(), float("nan"), 0
    with tqdm(total=total_steps * schedule.batch_size * block_size, desc=desc, unit="tok", unit_scale=True) as bar:
        for _ in range(schedule.epochs):
            order = torch.randperm(len(blocks), generator=generator)
            for step in range(steps_per_epoch):
                batch = blocks[order[step * schedule.batch_size : (step + 1) * schedule.batch_size]].to(device)
                with autocast(device):
                    loss = model(input_ids=batch, labels=batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, schedule.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += batch.numel()
                bar.update(batch.numel())
                if step % 10 == 0:
                    loss_value = loss.item()
                    bar.set_postfix(loss=f"{loss_value:.3f}")
    loss_value = loss.item()
    seconds = time.perf_counter() - start
    model.eval()
    return {
        "tokens": tokens, "steps": total_steps, "warmup_steps": warmup, "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds), "final_loss": round(loss_value, 4), "device": str(device),
    }


@torch.no_grad()
def evaluate(model, blocks: torch.Tensor, *, device: torch.device, batch_size: int = 32) -> dict:
    """Mean next-token cross-entropy and accuracy over every position of every block."""
    model.to(device).eval()
    total_loss, correct, count = 0.0, 0, 0
    for start in range(0, len(blocks), batch_size):
        batch = blocks[start : start + batch_size].to(device)
        with autocast(device):
            logits = model(input_ids=batch).logits
        logits, targets = logits[:, :-1].float(), batch[:, 1:]
        total_loss += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum"
        ).item()
        correct += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
    return {"loss": round(total_loss / count, 4), "accuracy": round(correct / count, 4), "tokens": count}


def evaluate_domains(model, tokenizer, domains: dict[str, str], *, block_size: int, eval_tokens: int,
                     device: torch.device, seed: int = 0) -> dict:
    """`{"val_loss": {domain: x}, "val_accuracy": {domain: y}}` over each domain's validation part."""
    losses, accuracies = {}, {}
    for domain, spec in domains.items():
        result = evaluate(model, validation_blocks(spec, tokenizer, block_size, eval_tokens, seed), device=device)
        losses[domain], accuracies[domain] = result["loss"], result["accuracy"]
    return {"val_loss": losses, "val_accuracy": accuracies}


# -- writing and registering --------------------------------------------------------------------


def model_folder(wh: Warehouse, name: str, out_dir: str | Path | None = None) -> Path:
    """Default home of a model: `<warehouse>/models/<name>`."""
    return Path(out_dir).expanduser().resolve() if out_dir else wh.root / "models" / check_name("model", name)


def check_new_model(wh: Warehouse, name: str, folder: Path, replace: bool) -> None:
    """Fail before any work when the name is taken or the folder is occupied (and not replacing)."""
    check_name("model", name)
    if replace:
        return
    if wh.exists() and wh.models.exists(name):  # a new warehouse has no models yet
        raise FeatstoreError(f"model {name!r} already exists; pass --replace to retrain it")
    if folder.exists():
        raise FeatstoreError(f"{folder} already exists; remove it or pass --replace")


def commit_model(wh: Warehouse, name: str, model, tokenizer, folder: Path, *, replace: bool, **registration) -> dict:
    """Write the HF folder under a temporary name, swap it into place, register it; undo all on failure."""
    from featstore.models.catalog import register_model

    wh.create()  # before models/ holds a folder: a catalog missing beside data is refused
    folder.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp, old = folder.with_name(f".{folder.name}.tmp-{tag}"), folder.with_name(f".{folder.name}.old-{tag}")
    placed = False
    try:
        model.to("cpu").save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        placed = True
        row = register_model(wh, name, folder, replace=replace, **registration)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if placed:
            shutil.rmtree(folder, ignore_errors=True)
        if old.exists():
            os.replace(old, folder)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return row


# -- the two training commands ------------------------------------------------------------------


def train_base(
    wh: Warehouse,
    name: str = BASE,
    *,
    preset: str | ModelPreset = "tiny",
    corpus: str | None = None,
    tokenizer: str | None = None,
    tok_corpora: Sequence[str] | None = None,
    max_tokens: int | None = None,
    epochs: int | None = None,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
    replace: bool = False,
) -> dict:
    """Train a base model from scratch on `corpus` (default: the preset's base mixture) and register it.

    It is measured on the preset's domains; a trained BPE sees `tok_corpora`, else the preset's family
    corpora (`tokenizer_corpora`; `preset_for_corpus` makes the preset of a corpus of your own).
    """
    preset = model_preset(preset)
    corpus = corpus or preset.corpora[BASE]
    schedule = replace_schedule(preset.base, max_tokens, epochs)
    folder = model_folder(wh, name, out_dir)
    check_new_model(wh, name, folder, replace)
    probe_corpus(corpus, seed)
    dev = resolve_device(device)
    tok_specs = tokenizer_corpora(preset, corpus, tok_corpora)
    with tempfile.TemporaryDirectory() as tok_dir:
        tok = family_tokenizer(preset, tokenizer, Path(tok_dir), corpora=tok_specs, seed=seed)
    texts = iter_texts(corpus, part="train", seed=seed)
    blocks = pack_blocks(texts, tok, preset.block_size, schedule.max_tokens // schedule.epochs, desc=f"{name} data")
    model = new_model(preset, tok, seed)
    run = train_lm(model, blocks, schedule, device=dev, seed=seed, desc=f"train {name}")
    metrics = _metrics(model, tok, preset, run, dev, seed)
    hyperparams = _hyperparams(preset, schedule, seed, tokenizer or preset.tokenizer)
    if (tokenizer or preset.tokenizer) == "bpe":
        hyperparams["tokenizer_corpora"] = tok_specs
    return commit_model(wh, name, model, tok, folder, replace=replace, kind="base",
                        train_corpus=corpus, hyperparams=hyperparams, metrics=metrics)


def finetune(
    wh: Warehouse,
    name: str,
    *,
    parent: str = BASE,
    corpus: str | None = None,
    preset: str | ModelPreset | None = None,
    max_tokens: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
    replace: bool = False,
) -> dict:
    """Fully fine-tune `parent` on `corpus` (default: the preset's corpus named like the new model)."""
    from featstore.models.catalog import get_model
    from featstore.text.tokenizer import load_tokenizer

    parent_row = get_model(wh, parent)
    preset = model_preset(preset) if preset is not None else _parent_preset(parent_row)
    corpus = corpus or preset.corpora.get(name)
    if corpus is None:
        raise FeatstoreError(
            f"no default corpus for a model named {name!r} (preset {preset.name} knows "
            f"{', '.join(k for k in preset.corpora if k != BASE)}); pass --corpus SPEC"
        )
    schedule = replace_schedule(preset.finetune, max_tokens, epochs, lr)
    folder = model_folder(wh, name, out_dir)
    check_new_model(wh, name, folder, replace)
    probe_corpus(corpus, seed)
    dev = resolve_device(device)
    tok = load_tokenizer(parent_row["path"])
    model = load_model(parent_row["path"], dev)
    texts = iter_texts(corpus, part="train", seed=seed)
    blocks = pack_blocks(texts, tok, preset.block_size, schedule.max_tokens // schedule.epochs, desc=f"{name} data")
    run = train_lm(model, blocks, schedule, device=dev, seed=seed, desc=f"finetune {name}")
    metrics = _metrics(model, tok, preset, run, dev, seed)
    hyperparams = _hyperparams(preset, schedule, seed, parent_row["path"])
    return commit_model(wh, name, model, tok, folder, replace=replace, kind="finetune", parents=(parent,),
                        train_corpus=corpus, hyperparams=hyperparams, metrics=metrics)


def replace_schedule(schedule: Schedule, max_tokens: int | None, epochs: int | None, lr: float | None = None) -> Schedule:
    changes = {k: v for k, v in {"max_tokens": max_tokens, "epochs": epochs, "lr": lr}.items() if v is not None}
    for key in ("max_tokens", "epochs"):
        if key in changes and changes[key] < 1:
            raise FeatstoreError(f"--{key.replace('_', '-')} must be at least 1 (got {changes[key]})")
    if "lr" in changes and not changes["lr"] > 0:
        raise FeatstoreError(f"--lr must be positive (got {lr})")
    return replace(schedule, **changes)


def _parent_preset(parent_row: dict) -> ModelPreset:
    stored = (parent_row.get("hyperparams") or {}).get("preset")
    if not stored:
        raise FeatstoreError(
            f"model {parent_row['name']!r} was not trained by featstore, so its preset is unknown; pass --preset"
        )
    return ModelPreset.from_dict(stored)


def _metrics(model, tok, preset: ModelPreset, run: dict, device: torch.device, seed: int) -> dict:
    scores = evaluate_domains(model, tok, preset.domains, block_size=preset.block_size,
                              eval_tokens=preset.eval_tokens, device=device, seed=seed)
    return {**scores, "train": run}


def _hyperparams(preset: ModelPreset, schedule: Schedule, seed: int, tokenizer_source: str) -> dict:
    return {"preset": asdict(preset), "schedule": asdict(schedule), "seed": seed, "tokenizer": tokenizer_source}


def compare_validation(wh: Warehouse, model: str, reference: str) -> list[dict]:
    """Per domain: the model's validation loss beside the reference's (e.g. a fine-tune vs its base)."""
    from featstore.models.catalog import get_model

    mine, theirs = get_model(wh, model)["metrics"], get_model(wh, reference)["metrics"]
    rows = []
    for domain, loss in mine.get("val_loss", {}).items():
        ref = theirs.get("val_loss", {}).get(domain)
        rows.append({
            "domain": domain, f"{reference}_loss": ref, f"{model}_loss": loss,
            "change": None if ref is None else round(loss - ref, 4),
            f"{model}_accuracy": mine.get("val_accuracy", {}).get(domain),
        })
    return rows



def finetune_findings(wh: Warehouse, name: str, parent: str, keep_domain: str = "python") -> list[str]:
    """The paper's sanity checks as sentences: lower loss on the fine-tune's own domain, the parent
    still lower on `keep_domain` (the base's Python)."""
    from featstore.models.catalog import get_model

    child = get_model(wh, name)
    domains = (child["hyperparams"].get("preset") or {}).get("domains", {})
    own = next((d for d, spec in domains.items() if spec == child["train_corpus"]), None)
    mine, theirs = child["metrics"].get("val_loss", {}), get_model(wh, parent)["metrics"].get("val_loss", {})
    lines = []
    if own in mine and own in theirs:
        verdict = "lower" if mine[own] < theirs[own] else "NOT lower"
        lines.append(f"{name} on its own domain {own}: loss {mine[own]:.4f} vs {parent} {theirs[own]:.4f} ({verdict})")
    if keep_domain in mine and keep_domain in theirs and keep_domain != own:
        verdict = "keeps the lower loss" if theirs[keep_domain] < mine[keep_domain] else "does NOT keep the lower loss"
        lines.append(f"{parent} on {keep_domain}: loss {theirs[keep_domain]:.4f} vs {name} {mine[keep_domain]:.4f} ({parent} {verdict})")
    return lines


def evaluate_model(wh: Warehouse, name: str, *, preset: str | ModelPreset, device: str | None = None) -> dict:
    """Evaluate any registered model (an imported checkpoint, say) on a preset's domains; store the metrics."""
    from featstore.models.catalog import get_model, update_model_metrics
    from featstore.text.tokenizer import load_tokenizer

    preset = model_preset(preset)
    row = get_model(wh, name)
    dev = resolve_device(device)
    model, tok = load_model(row["path"], dev), load_tokenizer(row["path"])
    scores = evaluate_domains(model, tok, preset.domains, block_size=preset.block_size,
                              eval_tokens=preset.eval_tokens, device=dev)
    return update_model_metrics(wh, name, scores)
