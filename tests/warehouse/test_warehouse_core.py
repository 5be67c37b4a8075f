"""The warehouse core: migrations, atomic partitions, the activations view."""

import duckdb
import pyarrow as pa
import pytest

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, sql_files


def rows(tok, feature, act):
    return pa.table({"tok": tok, "feature": feature, "act": act})


def last_table_file(files: list[tuple[str, str]]) -> str:
    """The schema version: the last table migration (views and macros come after the tables)."""
    return [path for path, _ in files if path.startswith("tables/")][-1]


def test_schema_applied_once_and_recorded(warehouse):
    assert warehouse.schema_version == last_table_file(sql_files())
    n = warehouse.scalar("SELECT count(*) FROM schema_migrations")
    Warehouse(warehouse.root).schema_version  # reopening applies nothing new
    assert warehouse.scalar("SELECT count(*) FROM schema_migrations") == n == len(sql_files())


def test_rewriting_partition_replaces_it(warehouse):
    warehouse.write_partition("s", "c", [rows([0, 1], [3, 4], [0.5, 1.0])], n_tokens=4, origin="import")
    path = warehouse.write_partition("s", "c", [rows([2], [5], [2.0])], n_tokens=4, origin="import")
    got = warehouse.query("SELECT sae, corpus, tok, feature, act FROM activations").to_pylist()
    assert got == [{"sae": "s", "corpus": "c", "tok": 2, "feature": 5, "act": 2.0}]
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_failed_write_leaves_old_partition(warehouse):
    warehouse.write_partition("s", "c", [rows([0], [1], [1.0])], n_tokens=1, origin="import")

    def broken():
        yield rows([7], [7], [7.0])
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        warehouse.write_partition("s", "c", broken(), n_tokens=1, origin="import")
    assert warehouse.query("SELECT tok FROM activations").to_pylist() == [{"tok": 0}]
    assert len(list(warehouse.partition_dir("s", "c").iterdir())) == 1


def test_view_works_from_another_directory(warehouse, tmp_path, monkeypatch):
    warehouse.write_partition("s", "c", [rows([0], [1], [1.0])], n_tokens=1, origin="import")
    monkeypatch.chdir(tmp_path)
    con = duckdb.connect(str(warehouse.db_path), read_only=True)
    assert con.execute("SELECT count(*) FROM activations").fetchone()[0] == 1
    con.close()


def test_bad_names_refused(warehouse):
    with pytest.raises(FeatstoreError, match="invalid SAE name"):
        warehouse.partition_dir("../x", "c")


def test_older_warehouse_is_migrated_on_open(tmp_path, monkeypatch):
    """A warehouse written by an older featstore (fewer sql/ files) gains the new objects on open."""
    import featstore.warehouse.core as module

    every = sql_files()
    monkeypatch.setattr(module, "sql_files", lambda: every[:9])
    old = Warehouse(tmp_path / "wh")
    assert old.schema_version == every[8][0]
    assert "correlations" not in {r["table_name"] for r in old.query("SELECT table_name FROM duckdb_tables()").to_pylist()}

    monkeypatch.setattr(module, "sql_files", lambda: every)
    reopened = Warehouse(tmp_path / "wh")
    assert reopened.schema_version == last_table_file(every)
    assert reopened.scalar("SELECT count(*) FROM correlations") == 0
    assert reopened.scalar("SELECT count(*) FROM schema_migrations") == len(every)


def test_edited_table_file_is_refused(tmp_path, monkeypatch):
    import featstore.warehouse.core as module

    every = sql_files()
    Warehouse(tmp_path / "wh").schema_version
    name, text = every[0]
    monkeypatch.setattr(module, "sql_files", lambda: [(name, text + "\n-- edited\n"), *every[1:]])
    with pytest.raises(FeatstoreError, match="changed after this warehouse applied it"):
        Warehouse(tmp_path / "wh").schema_version
