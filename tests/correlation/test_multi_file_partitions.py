"""Partitions of several part files (a sharded ingest's): every reader sees exactly the rows of the one-file
partition they replace: the `activations` view, all correlation engines, the sandboxed SQL, export,
copies of the warehouse; a missing part is reported, and dropping the partition removes every part."""

from __future__ import annotations

import shutil

import duckdb
import pyarrow.parquet as pq
import pytest
from helpers import D_B, same_results, split_into_parts, stored

from featstore.correlation.correlate import correlate
from featstore.errors import FeatstoreError
from featstore.export.tables import export_layout
from featstore.warehouse import Warehouse


@pytest.fixture(scope="module")
def before(filled):
    """The one-file partitions' view rows and SQL-engine results, then both sides split into 3 parts."""
    view = filled.query("SELECT * FROM activations ORDER BY ALL")
    results = {stat: stored(filled, correlate(filled, "sa", "sb", corpus="c", stat=stat, engine="sql", progress=False)["id"])
               for stat in ("all_tokens", "cofiring", "token_type_mean")}
    return view, results


@pytest.fixture(scope="module")
def split(filled, before, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("parts")
    return {sae: split_into_parts(filled, sae, "c", 3, scratch) for sae in ("sa", "sb")}


def test_parts_replace_the_file_and_the_view_is_unchanged(filled, before, split):
    view, _ = before
    for sae, files in split.items():
        assert [f.name[-23:] for f in files] == [f"-{i:05d}-of-00003.parquet" for i in range(3)]
        assert sorted(p.name for p in files[0].parent.iterdir()) == [f.name for f in files]  # the one file is gone
        (path,) = filled.query("SELECT path FROM activation_partitions WHERE sae = ?", [sae]).column("path").to_pylist()
        assert path.endswith("-*-of-00003.parquet")
        assert duckdb.execute(f"SELECT count(*) FROM read_parquet('{filled.root / path}')").fetchone()[0] == \
            filled.scalar("SELECT n_rows FROM activation_partitions WHERE sae = ?", [sae])
    assert filled.query("SELECT * FROM activations ORDER BY ALL").equals(view)
    assert len(filled.activation_files()) == 6


@pytest.mark.parametrize("engine", ["sql", "torch", "numba"])
@pytest.mark.parametrize("stat", ["all_tokens", "cofiring", "token_type_mean"])
def test_every_engine_reads_the_parts(filled, before, split, stat, engine):
    _, results = before
    run = correlate(filled, "sa", "sb", corpus="c", stat=stat, engine=engine, progress=False)
    assert same_results(results[stat], stored(filled, run["id"]), 0.2) == 0


def test_sandboxed_sql_reads_a_glob_path_and_nothing_beside_it(filled, split):
    path = filled.query("SELECT path FROM activation_partitions WHERE sae = 'sb'").column("path")[0].as_py()
    n_rows = filled.scalar("SELECT n_rows FROM activation_partitions WHERE sae = 'sb'")
    assert filled.sql(f"SELECT count(*) AS n FROM read_parquet('{filled.root / path}')").column("n")[0].as_py() == n_rows
    with pytest.raises(FeatstoreError, match="read-only"):
        filled.sql(f"SELECT count(*) FROM read_parquet('{split['sb'][0].parent}/*.parquet')")


def test_engine_layout_and_a_copied_warehouse_hold_every_part(filled, before, split, tmp_path):
    view, _ = before
    layout = export_layout(filled, tmp_path / "layout")
    assert layout["partition_files"] == 6
    paths = pq.read_table(tmp_path / "layout" / "activation_partitions.parquet").column("path").to_pylist()
    assert sum(duckdb.execute(f"SELECT count(*) FROM read_parquet('{tmp_path / 'layout' / p}')").fetchone()[0] for p in paths) == view.num_rows
    shutil.copytree(filled.root, tmp_path / "copy")
    copy = Warehouse(tmp_path / "copy")
    copy.relocate()
    assert all(f.is_relative_to(copy.root) for f in copy.activation_files())
    assert copy.query("SELECT * FROM activations ORDER BY ALL").equals(view)


def test_a_missing_part_is_reported_and_dropping_removes_every_part(filled, split, tmp_path):
    shutil.copytree(filled.root, tmp_path / "copy")
    copy = Warehouse(tmp_path / "copy")
    parts = copy.partition_files("sb", "c")
    kept = parts[1].read_bytes()
    parts[1].unlink()
    with pytest.raises(FeatstoreError, match=r"1 partition\(s\) with missing files, e\.g\. .*sae=sb.*-\*-of-00003\.parquet"):
        copy.relocate()
    parts[1].write_bytes(kept)  # back, so the catalog opens; then the SAE goes with all its parts
    copy.saes.drop("sb")
    assert not any(p.exists() for p in parts)
    assert copy.scalar("SELECT count(*) FROM activation_partitions") == 1


def test_the_browser_index_holds_every_part(filled, split):
    from featstore.browser.data import PartitionIndex

    (row,) = filled.query("SELECT path, n_rows FROM activation_partitions WHERE sae = 'sb'").to_pylist()
    index = PartitionIndex(str(filled.root / row["path"]), D_B)
    assert index.n_firing.sum() == row["n_rows"]
