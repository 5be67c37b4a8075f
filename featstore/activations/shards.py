"""Sharded ingest: N processes (or torchrun ranks, or machines sharing the warehouse folder) each encode
a share of a corpus's documents into their own Parquet part; the partition is published once every
part is there, in one catalog transaction.

A shard writes its part under a temporary name, sorts it as every partition file is sorted
(featstore.warehouse.storage), and renames it into the run's folder in `<warehouse>/staging/shards/`, so a
killed shard leaves no part and nothing visible; running that shard again completes the set.
Whichever shard finds the set complete (under a file lock, so only one does) publishes it through
`Warehouse.publish_parts`: the parts become the partition's files as they are (no pass over all of
them in one process), the catalog switches to them in one transaction, and the run's folder is
removed. Until then the previous partition (or none) stays visible.

A run is identified by everything that changes its rows: SAE, corpus, shard count, window length,
act dtype and the SAE's registration time; parts of another run are never mixed in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, check_name, storage


def parse_shard(spec: str | None) -> tuple[int, int] | None:
    """`I/N` (0 <= I < N) as (I, N); else RANK/WORLD_SIZE when launched by torchrun with several ranks."""
    if spec is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return (int(os.environ.get("RANK", "0")), world) if world > 1 else None
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise FeatstoreError(f"--shard takes I/N, e.g. 0/4 (got {spec!r})") from None
    if not 0 <= index < count:
        raise FeatstoreError(f"--shard {spec}: I must be in 0..N-1")
    return index, count


def run_folder(wh: Warehouse, sae: dict, corpus: str, count: int, context: int, act_dtype: str) -> Path:
    key = hashlib.sha256(repr((sae["id"], str(sae.get("created_at")), corpus, count, context, act_dtype)).encode()).hexdigest()[:12]
    return wh.root / "staging" / "shards" / f"{check_name('SAE', sae['id'])}@{check_name('corpus', corpus)}-{key}"


def part_path(folder: Path, index: int, count: int) -> Path:
    return folder / f"part-{index:05d}-of-{count:05d}.parquet"


def write_part(folder: Path, index: int, count: int, batches: Iterable[pa.RecordBatch], act_dtype: str) -> int:
    """Stream one shard's rows into its part, sorted and renamed into place only when complete; returns its rows."""
    folder.mkdir(parents=True, exist_ok=True)
    final = part_path(folder, index, count)
    tmp = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        n_rows = storage.write_sorted(tmp, batches, act_dtype)  # fsynced
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return n_rows


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder.parent / f"{folder.name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def publish_if_complete(wh: Warehouse, folder: Path, count: int, sae: str, corpus: str, n_tokens: int) -> Path | None:
    """Publish the run's parts as the (sae, corpus) partition when all `count` are there; its path, else None."""
    with _locked(folder):
        parts = [part_path(folder, i, count) for i in range(count)]
        if not folder.is_dir() or not all(p.exists() for p in parts):
            return None
        path = wh.publish_parts(sae, corpus, parts, n_tokens, origin="ingest")
        shutil.rmtree(folder)
    (folder.parent / f"{folder.name}.lock").unlink(missing_ok=True)
    return path


def missing_parts(folder: Path, count: int) -> list[int]:
    return [i for i in range(count) if not part_path(folder, i, count).exists()]

