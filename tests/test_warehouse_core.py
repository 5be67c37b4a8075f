"""The warehouse core: migrations, atomic partitions, the activations view."""

import duckdb
import pyarrow as pa
import pytest

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, sql_files


def rows(tok, feature, act):
    return pa.table({"tok": tok, "feature": feature, "act": act})


def test_schema_applied_once_and_recorded(warehouse):
    assert warehouse.schema_version == sql_files()[-1][0]
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
