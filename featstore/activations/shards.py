"""Sharded ingest: N processes (or torchrun ranks, or machines sharing the warehouse folder) each encode
a share of a corpus's documents into their own Parquet part; the partition is published once every
part is there, in one catalog transaction.

A shard writes its part under a temporary name, sorts it as every partition file is sorted
(featstore.warehouse.storage) and renames it into the run's folder in `<warehouse>/staging/shards/`:
a killed shard leaves no part and nothing visible, and running that shard again completes the set.
Which parts are finished is, on a DuckLake catalog, the rows each shard commits to `ingest_parts`
once its part is in place (not a listing of a shared folder, which a network file system may show
late, and no file lock); on the file catalog, whose shards share one machine, the run folder's
listing (no catalog row is written while other shards of the same process stream their tokens,
which DuckDB would refuse). A shard that finds the set complete publishes it through
`Warehouse.publish_parts`: the parts become the partition's files as they are (no pass over all of
them in one process), the catalog switches to them in one transaction, and the run's folder is
removed. One publisher: on the file catalog a file lock picks it; on a lake the first commit
publishes and the other shards find the run published. Until then the previous partition (or none)
stays visible.

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
from featstore.warehouse.queries import run


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


def record_part(wh: Warehouse, folder: Path, index: int, count: int, sae: str, corpus: str, n_rows: int) -> None:
    """On a lake, commit shard `index`'s finished part to the catalog (replacing the row of an earlier try).
    The file catalog needs no row: its shards share one machine, whose listing of the run folder is current."""
    if wh.lake is None:
        return
    path = wh.relative(part_path(folder, index, count))
    wh.retrying(lambda con: run(con, "parts/record", run=folder.name, part=index, parts=count, sae=sae, corpus=corpus,
                                path=path, n_rows=n_rows), tables=("ingest_parts",))


def finished_parts(wh: Warehouse, folder: Path, count: int) -> list[int]:
    """The shard indexes whose parts are finished: on a lake, those committed to the catalog; on the file
    catalog, the part files in the run's folder."""
    if wh.lake is None:
        return [i for i in range(count) if part_path(folder, i, count).exists()]
    with wh.connect(read_only=True) as con:
        return [part for part, _ in run(con, "parts/of_run", run=folder.name).fetchall()]


def missing_parts(wh: Warehouse, folder: Path, count: int) -> list[int]:
    done = set(finished_parts(wh, folder, count))
    return [i for i in range(count) if i not in done]


@contextmanager
def _publishing(wh: Warehouse, folder: Path) -> Iterator[None]:
    """One publisher at a time: a file lock beside the run folder on the file catalog (one machine); on a
    lake, none: the catalog commits one publication and the others find the run published."""
    if wh.lake is not None:
        yield
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = folder.parent / f"{folder.name}.lock"
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    lock.unlink(missing_ok=True)


def publish_if_complete(wh: Warehouse, folder: Path, count: int, sae: str, corpus: str, n_tokens: int) -> Path | None:
    """Publish the run's parts as the (sae, corpus) partition when all `count` are finished; its path, else None."""
    with _publishing(wh, folder):
        if len(finished_parts(wh, folder, count)) < count:
            return _published_path(wh, folder, sae, corpus)
        parts = [part_path(folder, i, count) for i in range(count)]
        try:
            path = wh.publish_parts(sae, corpus, parts, n_tokens, origin="ingest", run_id=folder.name)
        except FileNotFoundError:  # on a lake: another shard published the set and removed the folder meanwhile
            path = _published_path(wh, folder, sae, corpus)
            if path is None:
                raise
        shutil.rmtree(folder, ignore_errors=True)
    return path


def _published_path(wh: Warehouse, folder: Path, sae: str, corpus: str) -> Path | None:
    """On a lake, the partition's path when the catalog's (sae, corpus) is this run's (another shard published it)."""
    if wh.lake is None:
        return None
    with wh.connect(read_only=True) as con:
        row = run(con, "partitions/run_of", sae=sae, corpus=corpus).fetchone()
    return wh.root / row[1] if row and row[0] == folder.name else None
