"""Exports of tables and views, and `featstore sql`: round trips, name validation, atomic writes."""

import hashlib

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import run_cli

from featstore.errors import FeatstoreError
from featstore.export import tables as export_module
from featstore.export.tables import export, relation_names, run_sql


@pytest.fixture
def filled(warehouse):
    with warehouse.transaction() as con:
        con.execute(
            "INSERT INTO models (name, kind, path, hyperparams) VALUES"
            " ('base', 'base', '/m/base', '{\"lr\": 0.0006}'), ('lua', 'finetune', '/m/lua', NULL)"
        )
        con.execute("INSERT INTO lineage (parent, child, relation) VALUES ('base', 'lua', 'finetune')")
    acts = pa.table({"tok": [0, 1, 1, 5], "feature": [3, 3, 7, 1], "act": [0.5, 1.5, 2.0, 0.25]})
    warehouse.write_partition("base-sae", "eval", [acts], n_tokens=6, origin="import")
    return warehouse


def fingerprint(wh):
    """Every table's rows plus the file listing: what 'the warehouse is unchanged' means here."""
    with wh.connect(read_only=True) as con:
        dump = [con.sql(f'SELECT * FROM "{n}" ORDER BY ALL').fetchall() for n in relation_names(con) if n != "activations"]
    files = sorted(str(p.relative_to(wh.root)) for p in wh.root.rglob("*") if p.suffix != ".wal")
    return hashlib.sha256(repr((dump, files)).encode()).hexdigest()


@pytest.mark.parametrize("fmt", ["parquet", "csv", "arrow"])
def test_export_table_round_trips(filled, tmp_path, fmt):
    done = export(filled, "models", fmt, tmp_path / "out")
    path = tmp_path / "out" / f"models.{fmt}"
    assert done["path"] == str(path) and done["rows"] == 2
    reader = {"parquet": pl.read_parquet, "csv": pl.read_csv, "arrow": pl.read_ipc}[fmt]
    got = reader(path).sort("name")
    assert got["name"].to_list() == ["base", "lua"]
    assert got["kind"].to_list() == ["base", "finetune"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_export_view_defaults_to_warehouse_exports(filled):
    done = export(filled, "activations")
    table = pq.read_table(done["path"]).sort_by([("tok", "ascending"), ("feature", "ascending")])
    assert done["path"] == str(filled.root / "exports" / "activations.parquet")
    assert table.column("feature").to_pylist() == [3, 3, 7, 1]
    assert table.column("sae").to_pylist() == ["base-sae"] * 4


@pytest.mark.parametrize("name", ["nosuch", "models; DROP TABLE models", 'models" --', "duckdb_tables"])
def test_export_refuses_unknown_names(filled, tmp_path, name):
    before = fingerprint(filled)
    with pytest.raises(FeatstoreError, match="no table or view named"):
        export(filled, name, "csv", tmp_path / "out")
    assert fingerprint(filled) == before
    assert not (tmp_path / "out").exists()


def test_export_refuses_unknown_format_and_file_as_folder(filled, tmp_path):
    with pytest.raises(FeatstoreError, match="unknown export format"):
        export(filled, "models", "xlsx")
    (tmp_path / "f").write_text("x")
    with pytest.raises(FeatstoreError, match="is a file"):
        export(filled, "models", "csv", tmp_path / "f")


def test_failed_export_keeps_previous_file(filled, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export(filled, "models", "parquet", out)
    good = (out / "models.parquet").read_bytes()

    class Broken:
        def __init__(self, path, *args, **kwargs):
            self.path = path

        def __enter__(self):
            self.path.write_bytes(b"half")
            return self

        def __exit__(self, *exc):
            return False

        def write_batch(self, batch):
            raise OSError("disk full")

    monkeypatch.setattr(export_module.pq, "ParquetWriter", Broken)
    with pytest.raises(OSError):
        export(filled, "models", "parquet", out)
    assert (out / "models.parquet").read_bytes() == good
    assert [p.name for p in out.iterdir()] == ["models.parquet"]


def test_run_sql_reads_and_refuses_writes(filled):
    table = run_sql(filled, "SELECT parent, child FROM lineage")
    assert table.to_pylist() == [{"parent": "base", "child": "lua"}]
    before = fingerprint(filled)
    with pytest.raises(FeatstoreError, match="read-only"):
        run_sql(filled, "DELETE FROM models")
    with pytest.raises(FeatstoreError, match="query failed"):
        run_sql(filled, "SELEC 1")
    with pytest.raises(FeatstoreError, match="empty SQL"):
        run_sql(filled, "  ")
    assert fingerprint(filled) == before


def test_cli_export_and_sql(filled, tmp_path):
    result = run_cli(filled, "sql", "SELECT name, kind FROM models ORDER BY name")
    assert result.exit_code == 0, result.output
    assert "finetune" in result.output and "base" in result.output
    result = run_cli(filled, "export", "lineage", "--format", "csv", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert pl.read_csv(tmp_path / "lineage.csv")["child"].to_list() == ["lua"]
    result = run_cli(filled, "export", "nosuch")
    assert result.exit_code == 1
    assert result.output.strip().startswith("error: no table or view named 'nosuch'")
    result = run_cli(filled, "sql", "DROP TABLE models")
    assert result.exit_code == 1 and "read-only" in result.output
