"""Crosscoders in the warehouse: train one for a parent and a child, register it, ingest its activations.

A crosscoder is registered as an SAE row (architecture 'crosscoder', model = the child, never primary)
plus its `crosscoders` row and one `crosscoder_latents` row per latent, in one transaction after its
folder (`<warehouse>/crosscoders/<id>`) is complete. Its activations on a corpus slice are a partition
like any SAE's, keyed by the same token occurrences, so every SQL view over `activations` reads them.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from featstore.activations.ingest import (
    BATCH_SIZE,
    CONTEXT,
    encode_windows,
    prefetched,
    windows,
)
from featstore.crosscoders.latents import describe_latents, quality
from featstore.crosscoders.model import Crosscoder, load_crosscoder, save_crosscoder
from featstore.crosscoders.training import (
    CrosscoderSettings,
    paired_activations,
    train_crosscoder,
)
from featstore.errors import FeatstoreError
from featstore.models.catalog import get_model
from featstore.models.hf import load_model, resolve_device
from featstore.models.hooks import hook_name
from featstore.saes.catalog import check_hook, get_sae
from featstore.saes.training import text_blocks, warehouse_blocks
from featstore.text.slices import batched, check_tokenizer, get_corpus
from featstore.warehouse import Warehouse, check_name, remove_files

ARCHITECTURE = "crosscoder"


def default_id(parent: str, child: str, settings: CrosscoderSettings) -> str:
    return f"{parent}-{child}-crosscoder-{settings.sparsity}"


def train(wh: Warehouse, parent: str, child: str, *, settings: CrosscoderSettings, crosscoder_id: str | None = None,
          source: str | None = None, corpus: str | None = None, replace: bool = False, device: str | None = None,
          progress: bool = True) -> dict:
    """Train a crosscoder on `parent`'s and `child`'s activations over the same text, classify its latents on
    held-out text and register it; returns its `crosscoders` row with the SAE row's metrics and path.

    Text: a warehouse corpus slice (`corpus`, last tenth held out), else the spec `source`, else the two
    models' training corpora half and half (train part; held out: their validation part)."""
    from featstore.text.tokenizer import load_tokenizer

    if source is not None and corpus is not None:
        raise FeatstoreError("give the training text as --source SPEC or --corpus NAME, not both")
    crosscoder_id = crosscoder_id or default_id(parent, child, settings)
    check_name("crosscoder", crosscoder_id)
    if wh.saes.exists(crosscoder_id):
        if not wh.crosscoders.exists(crosscoder_id):
            raise FeatstoreError(f"SAE {crosscoder_id!r} exists and is not a crosscoder; pick another --id")
        if not replace:
            raise FeatstoreError(f"crosscoder {crosscoder_id!r} already exists; pick another --id or pass --replace")
    rows, width = _check_models(wh, parent, child, settings.layer)
    if settings.sparsity == "batchtopk" and settings.k > width * settings.expansion:
        raise FeatstoreError(f"a BatchTopK crosscoder needs 0 < k <= d_sae ({width * settings.expansion}); got k={settings.k}")
    device = resolve_device(device)
    tokenizer = load_tokenizer(rows[0]["path"])
    label, (train_blocks, eval_blocks) = _text(wh, rows, tokenizer, settings, source, corpus)
    models = tuple(load_model(row["path"], device) for row in rows)
    hook = hook_name(settings.layer)
    xc = train_crosscoder(models, train_blocks, hook=hook, names=(parent, child), settings=settings, device=device,
                          progress=progress)
    sample = paired_activations(models, [torch.as_tensor(b) for b in eval_blocks], hook, device)
    latents = describe_latents(xc, sample)
    metrics = {**quality(xc, sample), **_class_counts(latents)}
    folder = _save(wh, xc, crosscoder_id)
    record = {"id": crosscoder_id, "model": child, "hook_point": hook, "layer": settings.layer, "d_in": xc.cfg.d_in,
              "d_sae": xc.cfg.d_sae, "architecture": ARCHITECTURE, "l1_coeff": xc.cfg.l1_coefficient, "k": xc.cfg.k,
              "seed": settings.seed, "train_tokens": settings.tokens, "path": wh.relative(folder), "is_primary": False,
              "metrics": metrics}
    with wh.transaction() as con:
        stale = wh.saes.replace(con, record, replace=replace)
        wh.crosscoders.add(con, {"sae": crosscoder_id, "parent_model": parent, "child_model": child,
                                 "sparsity": settings.sparsity, "source": label}, latents)
    remove_files(stale)
    return get_crosscoder(wh, crosscoder_id)


def get_crosscoder(wh: Warehouse, crosscoder_id: str) -> dict:
    """The crosscoder's `crosscoders` row with its SAE row's path, d_in, d_sae and metrics."""
    row = wh.crosscoders.get(crosscoder_id)
    sae = get_sae(wh, crosscoder_id)
    return {**row, **{k: sae[k] for k in ("path", "hook_point", "layer", "d_in", "d_sae", "metrics")}}


def load(wh: Warehouse, crosscoder_id: str, device: str | torch.device = "cpu") -> Crosscoder:
    row = get_crosscoder(wh, crosscoder_id)
    if not row["path"] or not Path(row["path"]).is_dir():
        raise FeatstoreError(f"crosscoder {crosscoder_id!r} has no folder ({row['path']}); train it again")
    return load_crosscoder(row["path"], device)


def _check_models(wh: Warehouse, parent: str, child: str, layer: int) -> tuple[tuple[dict, dict], int]:
    """(their rows, the hooked activation's width) of two different models that share a tokenizer and that width."""
    if parent == child:
        raise FeatstoreError(f"a crosscoder reads two different models; got {parent!r} twice")
    rows = (get_model(wh, parent), get_model(wh, child))
    if rows[0].get("tokenizer") != rows[1].get("tokenizer"):
        raise FeatstoreError(f"models {parent!r} and {child!r} use different tokenizers, so they cannot read the same tokens")
    from featstore.models.layouts import hook_width

    widths = [hook_width(row["path"], hook_name(layer)) for row in rows]
    if widths[0] != widths[1]:
        raise FeatstoreError(f"models {parent!r} and {child!r} differ in width at {hook_name(layer)} ({widths[0]} vs {widths[1]})")
    for row, width in zip(rows, widths):
        check_hook(row, hook_name(layer), layer, width)
    return rows, widths[0]


def _text(wh: Warehouse, rows: tuple[dict, dict], tokenizer, settings: CrosscoderSettings, source: str | None,
          corpus: str | None) -> tuple[str, tuple[np.ndarray, np.ndarray]]:
    """(label of the text, (train blocks, held-out blocks))."""
    if corpus is not None:
        check_tokenizer(get_corpus(wh, corpus), rows[0])
        blocks = warehouse_blocks(wh, corpus, settings.block_len)
        n_eval = max(1, min(len(blocks) // 10, settings.eval_tokens // settings.block_len))
        if len(blocks) - n_eval < 1:
            raise FeatstoreError(f"corpus {corpus!r} is too small to train a crosscoder on")
        return f"corpus:{corpus}", (blocks[: len(blocks) - n_eval], blocks[len(blocks) - n_eval:])
    spec = source or _both_corpora(rows)
    train_blocks = text_blocks(spec, "train", tokenizer, settings.block_len, settings.tokens, settings.seed)
    eval_blocks = text_blocks(spec, "validation", tokenizer, settings.block_len, settings.eval_tokens, settings.seed)
    return spec, (train_blocks, eval_blocks)


def _both_corpora(rows: tuple[dict, dict]) -> str:
    """Half each model's training text: the two specs' components, each weighted by half its share."""
    from featstore.text.mixtures import parse_spec

    specs = list(dict.fromkeys(r["train_corpus"] for r in rows if r.get("train_corpus")))
    if not specs:
        raise FeatstoreError(f"models {rows[0]['name']!r} and {rows[1]['name']!r} record no training corpus; "
                             "pass --source SPEC or --corpus NAME")
    weights: dict[str, float] = {}
    for spec in specs:
        for part in parse_spec(spec):
            weights[part.source] = weights.get(part.source, 0.0) + part.weight / len(specs)
    return "+".join(f"{source}={weight:.6g}" for source, weight in weights.items())


def _class_counts(latents) -> dict:
    classes = latents.column("class").to_pylist()
    artefacts = latents.column("artefact").to_pylist()
    counts = {f"latents_{c}": classes.count(c) for c in ("shared", "parent_only", "child_only", "intermediate", "dead")}
    return {**counts, "exclusive_artefacts": sum(1 for a in artefacts if a)}


def _save(wh: Warehouse, xc: Crosscoder, crosscoder_id: str) -> Path:
    """Write the folder under a hidden name, then move it into place (a killed run leaves no folder)."""
    root = wh.root / "crosscoders"
    tmp = save_crosscoder(xc, root / f".{crosscoder_id}.{uuid.uuid4().hex[:8]}")
    folder = root / crosscoder_id
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def ingest(wh: Warehouse, crosscoder_id: str, corpus: str, *, batch_size: int = BATCH_SIZE, context: int = CONTEXT,
           device: str | None = None, progress: bool = True) -> dict:
    """Write the crosscoder's latent activations on `corpus` (both models run on every window) as its partition."""
    row = get_crosscoder(wh, crosscoder_id)
    rows, _ = _check_models(wh, row["parent_model"], row["child_model"], row["layer"])
    corpus_row = get_corpus(wh, corpus)
    check_tokenizer(corpus_row, rows[0])
    if not corpus_row["n_tokens"]:
        raise FeatstoreError(f"corpus {corpus!r} has no tokens")
    device = resolve_device(device)
    xc = load(wh, crosscoder_id, device)
    models = tuple(load_model(r["path"], device) for r in rows)
    start = time.perf_counter()
    with torch.no_grad(), tqdm(total=corpus_row["n_tokens"], unit="tok", unit_scale=True, disable=not progress,
                               desc=f"ingest {crosscoder_id}") as bar:
        stream = encode_windows(lambda blocks: paired_activations(models, blocks, row["hook_point"], device), xc.encode,
                                batched(windows(wh, corpus, context), batch_size), bar)
        path = wh.write_partition(crosscoder_id, corpus, prefetched(stream), corpus_row["n_tokens"], origin="ingest")
    seconds = time.perf_counter() - start
    stored = wh.partitions.get(crosscoder_id, corpus)
    return {"sae": crosscoder_id, "corpus": corpus, "tokens": corpus_row["n_tokens"], "rows": stored["n_rows"],
            "seconds": round(seconds, 3), "tokens_per_s": round(corpus_row["n_tokens"] / seconds, 1), "path": str(path)}
