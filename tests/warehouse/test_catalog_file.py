"""featstore.warehouse.catalog_file: every damaged block of a DuckDB file is found, a sound file passes
however DuckDB left its end (free blocks cut off, a partial block from a full disk)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

from featstore.warehouse import catalog_file
from featstore.warehouse.core import STORAGE_VERSION
from featstore.warehouse.queries import run

HEAD = catalog_file.HEADERS * catalog_file.HEADER_BYTES
BLOCK = catalog_file.DEFAULT_BLOCK_BYTES


def used_blocks(path: Path) -> int:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return run(con, "warehouse/used_blocks").fetchone()[0]
    finally:
        con.close()


def problem(path: Path) -> str | None:
    return catalog_file.problem(path, used_blocks(path))


def write(path: Path, *statements: str) -> Path:
    con = duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION})
    for statement in statements:
        con.execute(statement)
    con.close()
    return path


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """Two tables with primary keys (their indexes have blocks of their own): as many blocks as its header counts."""
    return write(tmp_path_factory.mktemp("whole") / "c.duckdb", "CREATE TABLE a (id INTEGER PRIMARY KEY, s VARCHAR)",
                 "CREATE TABLE b (id INTEGER PRIMARY KEY, s VARCHAR)", "INSERT INTO a SELECT range, 'a' || range FROM range(300000)",
                 "INSERT INTO b SELECT range, 'b' || range FROM range(300000)")


@pytest.fixture(scope="module")
def sound(whole, tmp_path_factory) -> Path:
    """`whole` with `b`, the last table written, emptied: DuckDB cuts the freed blocks off the file's end,
    though its header still counts them."""
    path = tmp_path_factory.mktemp("sound") / "c.duckdb"
    shutil.copy(whole, path)
    write(path, "DELETE FROM b")
    assert blocks_in(path) < blocks_in(whole)
    return path


def copy(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / "c.duckdb"
    shutil.copy(source, path)
    return path


def blocks_in(path: Path) -> int:
    return (path.stat().st_size - HEAD) // BLOCK


def damage(path: Path, offset: int, n: int = 16) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(os.urandom(n))


def scan_fails(path: Path) -> bool:
    """Whether DuckDB notices the damage when reading every column of every row of both tables."""
    try:
        con = duckdb.connect(str(path), read_only=True)
        con.execute("SELECT sum(hash(id)), sum(hash(s)) FROM a").fetchall()
        con.close()
        return False
    except duckdb.Error:
        return True


def test_a_sound_file_passes_though_shorter_than_its_header_counts(sound):
    assert problem(sound) is None
    assert catalog_file.problem(sound) is None


def test_every_damaged_block_is_found_where_a_scan_of_every_table_misses_some(sound, tmp_path):
    """16 bytes of garbage in any one block; a full scan through DuckDB misses the index blocks."""
    path = copy(sound, tmp_path)
    original = path.read_bytes()
    missed_by_scan = 0
    for block in range(blocks_in(path)):
        damage(path, HEAD + block * BLOCK + 1000)
        found = catalog_file.problem(path, used_blocks=0)
        assert found and "1 of its" in found and f"the first at byte {HEAD + block * BLOCK:,}" in found, block
        missed_by_scan += not scan_fails(path)
        path.write_bytes(original)
    assert missed_by_scan > 0


@pytest.mark.parametrize("offset, expected", [(100, "its headers fail"), (4096 + 100, "its headers fail"),
                                              (8192 + 100, "its headers fail"), (8, "not a DuckDB file")])
def test_damaged_headers_are_found_without_reading_the_blocks(sound, tmp_path, offset, expected):
    path = copy(sound, tmp_path)
    damage(path, offset, 4)
    assert expected in catalog_file.problem(path)


def test_a_partial_block_past_the_counted_ones_is_free_space(whole, tmp_path):
    """What a write that ran out of disk may leave at the end: DuckDB ignores it, so do we (featstore's
    own writers cut it off again)."""
    path = copy(whole, tmp_path)
    with open(path, "ab") as fh:
        fh.write(os.urandom(5000))
    assert problem(path) is None


def test_a_cut_file_is_truncated(sound, tmp_path):
    """A file that ends inside a block its header counts, or holds fewer blocks than DuckDB uses."""
    path = copy(sound, tmp_path)
    os.truncate(path, HEAD + 3 * BLOCK + 100)
    assert "truncated: it ends inside block 3 of the" in catalog_file.problem(path)
    path = copy(sound, tmp_path)
    used = used_blocks(path)
    os.truncate(path, HEAD + (used - 1) * BLOCK)  # at a block boundary: only DuckDB's count of the blocks in use tells
    assert catalog_file.problem(path) is None
    assert f"truncated: it holds {used - 1:,} blocks, {used:,} are in use" in catalog_file.problem(path, used)
    os.truncate(path, 100)
    assert catalog_file.problem(path) == "not a DuckDB file"
