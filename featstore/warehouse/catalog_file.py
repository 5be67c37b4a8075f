"""The catalog file's integrity, read without DuckDB: its headers, its length and every block's checksum.

A DuckDB file is three 4 KiB headers (the main one and two database headers, the one of the higher
iteration active), then blocks. The active header counts `block_count` blocks, but the file may hold
fewer (DuckDB cuts free blocks off its end) or a partial one past them (a write that ran out of disk).
Each header and block starts with a checksum of the rest of it. DuckDB checks a block only when a query
reads it, so a write succeeds on a file whose other tables, or their primary-key indexes, can no longer
be read: a scan of every table catches damaged table data but not a damaged index block. Checking every
block's checksum catches both, in about 1 ms per MB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEADER_BYTES = 4096
HEADERS = 3  # the main header, then the two database headers
MAGIC = b"DUCK"  # bytes 8..12 of the main header
SEED, FACTOR = np.uint64(5381), np.uint64(0xBF58476D1CE4E5B9)  # DuckDB's checksum (common/checksum.cpp)
ITERATION, BLOCK_COUNT, BLOCK_BYTES = 1, 4, 5  # words of a database header (word 0 is its checksum)
DEFAULT_BLOCK_BYTES = 256 * 1024  # for headers that leave BLOCK_BYTES 0
CHUNK_BYTES = 16 << 20  # blocks are checked this many bytes at a time


def headers(path: Path) -> bytes:
    """The file's headers (fewer bytes for a short file, none for a missing one): they change exactly when
    a checkpoint writes the file's new state."""
    try:
        with open(path, "rb") as fh:
            return fh.read(HEADERS * HEADER_BYTES)
    except FileNotFoundError:
        return b""


def checksums(rows: np.ndarray) -> np.ndarray:
    """DuckDB's checksum of each row of little-endian words, over all but its first (the stored checksum)."""
    return np.bitwise_xor.reduce(rows[:, 1:] * FACTOR, axis=1) ^ SEED


def problem(path: Path, used_blocks: int | None = None) -> str | None:
    """What is damaged in the DuckDB file at `path`, or None: its headers and a partial block among those
    it counts, always; given `used_blocks` (DuckDB's count of the blocks in use), also whether the file
    holds that many and whether every block in it passes its checksum (a read of the whole file)."""
    with open(path, "rb") as fh:
        head = fh.read(HEADERS * HEADER_BYTES)
        if len(head) < HEADERS * HEADER_BYTES or head[8:12] != MAGIC:
            return "not a DuckDB file"
        words = np.frombuffer(head, "<u8").reshape(HEADERS, -1)
        if (checksums(words) != words[:, 0]).any():
            return "its headers fail their checksum"
        active = words[1:][words[1:, ITERATION].argmax()]
        count, size = int(active[BLOCK_COUNT]), int(active[BLOCK_BYTES]) or DEFAULT_BLOCK_BYTES
        held, partial = divmod(path.stat().st_size - len(head), size)
        if partial and held < count:
            return f"truncated: it ends inside block {held:,} of the {count:,} its header counts"
        if used_blocks is None:
            return None
        if held < used_blocks:
            return f"truncated: it holds {held:,} blocks, {used_blocks:,} are in use"
        bad = _bad_blocks(fh, min(held, count), size)
    if bad:
        return f"{len(bad):,} of its {count:,} blocks fail their checksum, the first at byte {len(head) + bad[0] * size:,}"
    return None


def _bad_blocks(fh, count: int, size: int) -> list[int]:
    """The indices of the first `count` blocks (of `size` bytes, `fh` at the first) whose checksum fails."""
    bad, per_chunk = [], max(1, CHUNK_BYTES // size)
    for first in range(0, count, per_chunk):
        n = min(per_chunk, count - first)
        blocks = np.frombuffer(fh.read(n * size), "<u8").reshape(n, -1)
        bad.extend(first + np.flatnonzero(checksums(blocks) != blocks[:, 0]))
    return [int(i) for i in bad]
