"""Ingest: run a model over a warehouse corpus, encode its MLP activation with an SAE, store act > 0.

The token ids come from the warehouse, so every activation row carries the `tok` of the occurrence
it was computed on. Rows stream as Arrow batches into `Warehouse.write_partition`, which commits the
Parquet file atomically: an interrupted or failed ingest leaves the previous partition (or none) and
a rerun replaces it. On several devices (`--device cuda:0,cuda:1`, or by default every visible GPU
when there are several) the corpus is ingested as one shard per device, side by side.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from featstore.errors import FeatstoreError
from featstore.models.capture import batch_activations
from featstore.models.hf import load_model, resolve_device
from featstore.text.slices import batched, slices_to_compute
from featstore.warehouse import Warehouse
from featstore.warehouse.storage import ACT_DTYPES, ACTIVATION_SCHEMA

T = TypeVar("T")
BATCH_SIZE, CONTEXT = 16, 256  # windows per forward pass, tokens per window


def default_corpus(wh: Warehouse, tokenizer: str | None) -> str:
    """The only corpus tokenized with the model's tokenizer; otherwise ask for --corpus."""
    names = wh.corpora.names_with_tokenizer(tokenizer)
    if len(names) == 1:
        return names[0]
    if not names:
        raise FeatstoreError("no corpus in the warehouse uses this model's tokenizer; add one with `featstore corpus add`")
    raise FeatstoreError(f"several corpora use this model's tokenizer ({', '.join(names)}); pick one with --corpus")


def windows(wh: Warehouse, corpus: str, context: int, shard: tuple[int, int] | None = None,
            cancelled: threading.Event | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(tok, token_id) windows of at most `context` tokens, each inside one document; with
    shard (I, N) only those of the documents whose doc_id % N == I. Once `cancelled` is set, the
    next window raises instead."""
    from featstore.text.slices import corpus_token_blocks

    for doc_id, toks, token_ids in corpus_token_blocks(wh, corpus):
        if shard is not None and doc_id % shard[1] != shard[0]:
            continue
        for start in range(0, len(toks), context):
            if cancelled is not None and cancelled.is_set():
                raise FeatstoreError("ingest cancelled: another shard of it failed or was interrupted; nothing was published")
            yield toks[start : start + context], token_ids[start : start + context]


Activations = Callable[[list[torch.Tensor]], torch.Tensor]  # a batch of token-id blocks -> what the encoder reads


def model_activations(model, hook: str, device: torch.device) -> Activations:
    """A model's activations at `hook`, (tokens, width) per batch of blocks: what an SAE encodes."""
    return lambda blocks: batch_activations(model, blocks, hook, device).float()


@torch.no_grad()  # grad mode is per thread, and `prefetched` runs this in its own
def encode_windows(
    activations: Activations, encode: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterator[list[tuple[np.ndarray, np.ndarray]]], bar, act_dtype: str = "float32",
) -> Iterator[pa.RecordBatch]:
    """Sparse (tok, feature, act) rows of each batch of windows, act rounded to `act_dtype`; NaN/inf abort."""
    for batch in batches:
        x = activations([torch.as_tensor(ids.astype(np.int64)) for _, ids in batch])
        feats = encode(x)
        if not (_finite(x) and _finite(feats)):
            raise FeatstoreError("NaN/inf activations from the model or SAE; nothing was written (check the weights)")
        feats = rounded(feats, act_dtype)
        rows, features = torch.nonzero(feats > 0, as_tuple=True)
        toks = np.concatenate([t for t, _ in batch])
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(toks[rows.cpu().numpy()].astype(np.uint32, copy=False)),
                pa.array(features.cpu().numpy().astype(np.uint32)),
                pa.array(feats[rows, features].cpu().numpy().astype(np.float32, copy=False)),
            ],
            schema=ACTIVATION_SCHEMA,
        )
        bar.update(len(feats))


def _finite(t: torch.Tensor) -> bool:
    """No NaN or inf in `t`: one sum (NaN and inf survive it), checked value by value only when it overflows."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def prefetched(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """`items`, produced in a background thread up to `depth` ahead, so that compressing and writing
    one batch (pyarrow, which releases the GIL) overlaps encoding the next. The producer's exception
    is raised here; closing this iterator stops the producer after the item it is working on."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(message: tuple) -> bool:
        while not stop.is_set():
            try:
                slots.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put(("error", exc))

    producer = threading.Thread(target=produce, name="featstore-encode", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()


def rounded(feats: torch.Tensor, act_dtype: str) -> torch.Tensor:
    """float32 activations holding exactly the values of `act_dtype` (round to nearest even); values
    too small for it become 0 (implicit zeros), values too large for float16 are refused."""
    if act_dtype == "float32":
        return feats
    half = feats.to(getattr(torch, act_dtype)).float()
    if not torch.isfinite(half).all():
        raise FeatstoreError(f"activations exceed {act_dtype}'s range; nothing was written: use --act-dtype bfloat16")
    return half


def check_options(batch_size: int, context: int, act_dtype: str) -> None:
    """Refuse windowing and storage options that no ingest can use."""
    if context < 1 or batch_size < 1:
        raise FeatstoreError("--context and --batch-size must be positive")
    if act_dtype not in ACT_DTYPES:
        raise FeatstoreError(f"unknown --act-dtype {act_dtype!r}; use one of {', '.join(ACT_DTYPES)}")


def model_and_sae(wh: Warehouse, model: str, sae_id: str | None, layer: int | None = None) -> tuple[dict, dict]:
    """The rows of `model` and of the SAE that encodes it (`sae_id`, default: its primary), which must read `layer`."""
    from featstore.models.catalog import get_model
    from featstore.saes.catalog import get_sae, primary_sae

    model_row = get_model(wh, model)
    sae_row = get_sae(wh, sae_id) if sae_id else primary_sae(wh, model)
    if sae_row["model"] != model:
        raise FeatstoreError(f"SAE {sae_row['id']!r} was trained on model {sae_row['model']!r}, not {model!r}")
    if layer is not None and layer != sae_row["layer"]:
        raise FeatstoreError(f"SAE {sae_row['id']!r} reads layer {sae_row['layer']}, not layer {layer}")
    return model_row, sae_row


def ingest(
    wh: Warehouse,
    model: str,
    *,
    corpus: str | None = None,
    sae_id: str | None = None,
    layer: int | None = None,
    batch_size: int = BATCH_SIZE,
    context: int = CONTEXT,
    device: str | None = None,
    progress: bool = True,
    act_dtype: str = "float32",
    shard: tuple[int, int] | None = None,
    cancelled: threading.Event | None = None,
) -> dict:
    """Write the sparse activations of `sae_id` (default: the model's primary SAE) on `corpus`.

    `corpus` defaults to the only corpus tokenized with the model's tokenizer. Checks before any
    compute: the SAE belongs to the model, the corpus and model share a tokenizer, the SAE's d_in is
    the hook's width. Returns a summary (sae, corpus, tokens, rows, seconds, tokens_per_s, path).
    Setting `cancelled` stops it before its next window (for the shards of `ingest_on_devices`).
    """
    from featstore.saes import load_sae
    from featstore.saes.catalog import check_hook
    from featstore.text.slices import check_tokenizer, get_corpus

    check_options(batch_size, context, act_dtype)
    model_row, sae_row = model_and_sae(wh, model, sae_id, layer)
    corpus = corpus or default_corpus(wh, model_row.get("tokenizer"))
    corpus_row = get_corpus(wh, corpus)
    check_tokenizer(corpus_row, model_row)
    if not corpus_row["n_tokens"]:
        raise FeatstoreError(f"corpus {corpus!r} has no tokens")
    check_hook(model_row, sae_row["hook_point"], sae_row["layer"], sae_row["d_in"])

    if device is None and shard is not None and torch.cuda.is_available():  # torchrun: one GPU per local rank
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', shard[0])) % torch.cuda.device_count()}"
    device = resolve_device(device)
    lm = load_model(model_row["path"], device)
    sae = load_sae(sae_row["path"], device)
    if sae.cfg.d_in != sae_row["d_in"]:
        raise FeatstoreError(f"SAE {sae_row['id']!r}: weights have d_in {sae.cfg.d_in}, the registry says {sae_row['d_in']}")

    start = time.perf_counter()
    total = corpus_row["n_tokens"] // (shard[1] if shard else 1)
    desc = f"ingest {sae_row['id']}" + (f" shard {shard[0]}/{shard[1]} on {device}" if shard else "")
    with torch.no_grad(), tqdm(total=total, unit="tok", unit_scale=True, disable=not progress, desc=desc,
                               position=shard[0] if cancelled is not None else None) as bar:  # one line per device
        rows = prefetched(encode_windows(model_activations(lm, sae_row["hook_point"], device), sae.encode,
                                         batched(windows(wh, corpus, context, shard, cancelled), batch_size), bar, act_dtype))
        if shard is not None:
            return _ingest_shard(wh, sae_row, corpus_row, rows, shard, context, act_dtype, start, bar)
        path = wh.write_partition(sae_row["id"], corpus, rows, corpus_row["n_tokens"], origin="ingest", act_dtype=act_dtype)
    seconds = time.perf_counter() - start
    n_rows = wh.partitions.get(sae_row["id"], corpus)["n_rows"]
    return {
        "sae": sae_row["id"], "corpus": corpus, "tokens": corpus_row["n_tokens"], "rows": n_rows,
        "rows_per_token": n_rows / corpus_row["n_tokens"], "seconds": round(seconds, 3),
        "tokens_per_s": round(corpus_row["n_tokens"] / seconds, 1), "path": str(path), "act_dtype": act_dtype,
        "bytes_per_activation": round(path.stat().st_size / max(n_rows, 1), 2),
    }


def _ingest_shard(wh: Warehouse, sae_row: dict, corpus_row: dict, rows, shard: tuple[int, int], context: int,
                  act_dtype: str, start: float, bar) -> dict:
    """Write one shard's part; publish the partition when it completes the set (featstore.activations.shards)."""
    from featstore.activations import shards as sharding

    index, count = shard
    folder = sharding.run_folder(wh, sae_row, corpus_row["name"], count, context, act_dtype)
    n_rows = sharding.write_part(folder, index, count, rows, act_dtype)
    sharding.record_part(wh, folder, index, count, sae_row["id"], corpus_row["name"], n_rows)
    tokens, seconds = bar.n, time.perf_counter() - start
    path = sharding.publish_if_complete(wh, folder, count, sae_row["id"], corpus_row["name"], corpus_row["n_tokens"])
    return {
        "sae": sae_row["id"], "corpus": corpus_row["name"], "shard": f"{index}/{count}", "tokens": tokens, "rows": n_rows,
        "seconds": round(seconds, 3), "tokens_per_s": round(tokens / max(seconds, 1e-9), 1), "act_dtype": act_dtype,
        "published": path is not None,
        "path": str(path) if path else None, "waiting_for": [] if path else sharding.missing_parts(wh, folder, count),
    }


def ingest_corpora(wh: Warehouse, model: str, corpora: Sequence[str], **options) -> list[dict]:
    """`ingest` on each of `corpora`, on several devices at once when `ingest_devices` finds them. Every
    corpus and option is checked before the first is computed; with no corpora, the checks alone run."""
    from featstore.text.slices import get_corpus

    for corpus in corpora:
        get_corpus(wh, corpus)
    check_options(options.get("batch_size", BATCH_SIZE), options.get("context", CONTEXT), options.get("act_dtype", "float32"))
    model_and_sae(wh, model, options.get("sae_id"), options.get("layer"))
    devices = ingest_devices(options.get("device"), options.get("shard"))
    if devices:
        options = {k: v for k, v in options.items() if k not in ("device", "shard")}
        return [ingest_on_devices(wh, model, devices, corpus=corpus, **options) for corpus in corpora]
    resolve_device(options.get("device"))  # refuses an unknown or absent one before any work
    return [ingest(wh, model, corpus=corpus, **options) for corpus in corpora]


def corpora_to_ingest(wh: Warehouse, model: str, corpora: Sequence[str] = (), *, sae_id: str | None = None,
                      every: bool = False) -> tuple[list[str], str | None]:
    """The corpus slices `featstore ingest` computes, and a line naming those it skips (None: none skipped).

    Named `corpora` are computed as named. Otherwise every slice of the model's tokenizer where the SAE
    (default: the model's primary) has no partition covering it, or with `every` all of them: so a rerun
    after a finished run computes nothing, and one after a slice's partition is dropped computes that slice.
    """
    if corpora:
        return list(corpora), None
    model_row, sae_row = model_and_sae(wh, model, sae_id)
    stored = wh.partitions.stored_on_tokenizer(sae_row["id"], model_row.get("tokenizer"))
    if not stored:
        raise FeatstoreError("no corpus in the warehouse uses this model's tokenizer; add one with `featstore corpus add`")
    return slices_to_compute(stored, every, f"{sae_row['id']} has activations", "ingests them again")


def ingest_devices(device: str | None, shard: tuple[int, int] | None) -> list[str] | None:
    """The devices to shard an ingest over: those of a comma-separated `device`, else every visible GPU
    when there are several, no shard was asked for and `device` names no one GPU (None, auto, cuda);
    None: one device."""
    if device is not None and "," in device:
        devices = [d.strip() for d in device.split(",")]
        if shard is not None:
            raise FeatstoreError("--shard runs one share on one device; give --device one device, or drop --shard")
        for name in devices:
            resolve_device(name)  # refuses an unknown or absent one before any work
        return devices
    if device in (None, "auto", "cuda") and shard is None and torch.cuda.device_count() > 1:
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return None


def ingest_on_devices(wh: Warehouse, model: str, devices: Sequence[str], **options) -> dict:
    """`ingest` as len(devices) shards side by side in this process, shard i on devices[i], one thread each
    (the forward passes release the GIL); the shard that finishes last publishes the partition
    (featstore.activations.shards). Returns the summary an unsharded ingest returns, with the devices."""
    start = time.perf_counter()
    count, cancelled = len(devices), threading.Event()
    with ThreadPoolExecutor(count, thread_name_prefix="ingest-shard") as pool:
        futures = [pool.submit(ingest, wh, model, device=device, shard=(i, count), cancelled=cancelled, **options)
                   for i, device in enumerate(devices)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failed shard or Ctrl-C: the others stop at their next window, so none publishes
            if not all(f.done() and f.exception() is None for f in futures):
                cancelled.set()
        failed = [f.exception() for f in done if f.exception() is not None]
        if failed:
            raise failed[0]  # the cause, not the other shards' cancellation
        shards = [future.result() for future in futures]
    seconds = time.perf_counter() - start
    (published,) = [s for s in shards if s["published"]]
    row = wh.partitions.get(published["sae"], published["corpus"])
    return {
        "sae": row["sae"], "corpus": row["corpus"], "tokens": row["n_tokens"], "rows": row["n_rows"],
        "rows_per_token": row["n_rows"] / row["n_tokens"], "seconds": round(seconds, 3),
        "tokens_per_s": round(row["n_tokens"] / seconds, 1), "path": published["path"],
        "act_dtype": published["act_dtype"], "bytes_per_activation": round(row["bytes"] / max(row["n_rows"], 1), 2),
        "devices": list(devices),
    }
