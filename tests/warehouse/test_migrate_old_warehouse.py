"""A warehouse written by the first release's code (flat, numbered sql/ files) opens and migrates.

tests/fixtures/first_release/ holds the first release's `featstore/warehouse.py` and its 63 `sql/` files
verbatim (commit f3fd8d1), so the old warehouse is written by the old code, not imitated.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from helpers import FIXTURES

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, sql_files

FIRST_RELEASE = FIXTURES / "first_release"
TABLES = ("models", "lineage", "saes", "correlation_runs", "best_matches", "corpora", "tokens", "scores")


def first_release_warehouse_class():
    spec = importlib.util.spec_from_file_location("first_release_warehouse", FIRST_RELEASE / "featstore" / "warehouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Warehouse


def write_first_release(root: Path):
    """Two models, an SAE each, a corpus, an activation partition, a correlation run, one score."""
    old = first_release_warehouse_class()(root)
    with old.transaction() as con:
        con.execute("INSERT INTO tokenizers VALUES ('fp', 'tiny', 3, DEFAULT)")
        con.execute("INSERT INTO vocab VALUES ('fp', 0, 'a', 'a'), ('fp', 1, 'b', 'b'), ('fp', 2, 'c', 'c')")
        con.execute("INSERT INTO corpora VALUES ('ev', 'test', 'fp', 1, 6, 0, NULL, DEFAULT)")
        con.execute("INSERT INTO tokens SELECT i, 'ev', 0, i, i % 3 FROM range(6) r(i)")
        con.execute("INSERT INTO models (name, kind, path) VALUES ('base', 'base', '/m/base'), ('lua', 'finetune', '/m/lua')")
        con.execute("INSERT INTO lineage VALUES ('base', 'lua', 'finetune', 0, NULL, NULL)")
        con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture) VALUES"
                    " ('base-sae', 'base', 'blocks.0.mlp.hook_post', 0, 8, 2, 'relu'),"
                    " ('lua-sae', 'lua', 'blocks.0.mlp.hook_post', 0, 8, 2, 'topk')")
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (7, 'base-sae', 'lua-sae', 'ev', 'all_tokens', 0.2, 6, 1)")
        con.execute("INSERT INTO best_matches VALUES (7, 'a', 0, 0, 0.9), (7, 'a', 1, 0, 0.3),"
                    " (7, 'b', 0, 0, 0.9), (7, 'b', 1, NULL, NULL)")
        con.execute("INSERT INTO scores (id, sae, corpus, feature, kind, source_sae, source_feature, explainer,"
                    " explainer_version, simulator, simulator_version, score, n_samples)"
                    " VALUES (1, 'base-sae', 'ev', 0, 'self', 'base-sae', 0, 'builtin', 'v1', 'builtin', 'v1', 0.5, 20)")
    acts = pa.table({"tok": pa.array([0, 3], pa.uint32()), "feature": pa.array([0, 0], pa.uint32()),
                     "act": pa.array([1.0, 2.0], pa.float32())})
    old.write_partition("base-sae", "ev", [acts], n_tokens=6, origin="import")
    return old


def snapshot(db_path: Path, columns: dict[str, list[str]] | None = None) -> dict[str, list]:
    """Every row of TABLES; with `columns`, of those columns only (later migrations may add columns)."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {t: con.execute(f"SELECT {', '.join(columns[t]) if columns else '*'} FROM {t} ORDER BY ALL").fetchall()
                for t in TABLES}
    finally:
        con.close()


def column_names(db_path: Path) -> dict[str, list[str]]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {t: [row[0] for row in con.execute(f"DESCRIBE {t}").fetchall()] for t in TABLES}
    finally:
        con.close()


@pytest.fixture
def old_root(tmp_path):
    write_first_release(tmp_path / "wh")
    return tmp_path / "wh"


def test_old_warehouse_opens_migrates_and_keeps_its_rows(old_root):
    before, old_columns = snapshot(old_root / "featstore.duckdb"), column_names(old_root / "featstore.duckdb")
    con = duckdb.connect(str(old_root / "featstore.duckdb"), read_only=True)
    old_files = {r[0] for r in con.execute("SELECT file FROM schema_migrations").fetchall()}
    old_checks = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE constraint_type = 'CHECK'"
                             " AND table_name IN ('models', 'lineage', 'correlation_runs')").fetchone()[0]
    con.close()
    assert len(old_files) == 63 and "624_run_steps.sql" in old_files and old_checks == 3
    wh = Warehouse(old_root)
    assert wh.schema_version == [p for p, _ in sql_files() if p.startswith("tables/")][-1]
    assert snapshot(wh.db_path, old_columns) == before  # every row kept; saes gains seed_of (NULL)
    assert wh.scalar("SELECT count(*) FROM saes WHERE seed_of IS NOT NULL") == 0

    records = {r["file"]: r["sha256"] for r in wh.query("SELECT file, sha256 FROM schema_migrations").to_pylist()}
    assert set(records) == {path for path, _ in sql_files()}
    old_models = (FIRST_RELEASE / "sql" / "006_models.sql").read_bytes()
    assert records["tables/006_models.sql"] == hashlib.sha256(old_models).hexdigest()
    assert records["tables/010_correlation_runs.sql"] == hashlib.sha256(
        (FIRST_RELEASE / "sql" / "010_correlations.sql").read_bytes()).hexdigest()

    lookups = {t: set(wh.query(f"SELECT * FROM {t}").column(0).to_pylist()) for t in ("model_kinds", "lineage_relations", "correlation_stats", "sae_architectures")}
    assert lookups["model_kinds"] == {"base", "finetune", "merge", "imported"}
    assert lookups["lineage_relations"] == {"finetune", "merge"}
    assert lookups["correlation_stats"] == {"all_tokens", "cofiring", "token_type_mean"}
    assert {"relu", "topk"} <= lookups["sae_architectures"]

    constraints = wh.query("SELECT table_name, constraint_type FROM duckdb_constraints()"
                           " WHERE table_name IN ('models', 'lineage', 'correlation_runs', 'saes')").to_pylist()
    kinds = {(c["table_name"], c["constraint_type"]) for c in constraints}
    assert not {k for k in kinds if k[1] == "CHECK"}
    assert {(t, "FOREIGN KEY") for t in ("models", "lineage", "correlation_runs", "saes")} <= kinds

    # views work on the migrated data
    summary = wh.query("SELECT parent, child, parent_persist, parent_disappear FROM persistence_summary").to_pylist()
    assert summary == [{"parent": "base", "child": "lua", "parent_persist": 1, "parent_disappear": 1}]
    assert wh.scalar("SELECT n_firing FROM feature_stats WHERE sae = 'base-sae' AND feature = 0") == 2
    assert wh.scalar("SELECT mean_score FROM run_scores") == 0.5


def test_new_values_are_lookup_rows_not_table_rebuilds(old_root):
    wh = Warehouse(old_root)
    with pytest.raises(duckdb.ConstraintException, match="foreign key"):
        with wh.transaction() as con:
            con.execute("INSERT INTO lineage VALUES ('base', 'lua-distilled', 'distill', 0, NULL, NULL)")
    with wh.transaction() as con:
        con.execute("INSERT INTO lineage_relations VALUES ('distill', 'the child learned from the parent''s outputs')")
        con.execute("INSERT INTO models (name, kind, path) VALUES ('lua-distilled', 'imported', '/m/d')")
        con.execute("INSERT INTO lineage VALUES ('base', 'lua-distilled', 'distill', 0, NULL, NULL)")
    assert wh.scalar("SELECT count(*) FROM lineage WHERE relation = 'distill'") == 1
    # a model that is dropped and re-registered in one transaction (as `model add --replace` does)
    with wh.transaction() as con:
        con.execute("DELETE FROM lineage WHERE child = 'lua'")
        con.execute("DELETE FROM models WHERE name = 'lua'")
        con.execute("INSERT INTO models (name, kind, path) VALUES ('lua', 'finetune', '/m/lua2')")
    assert wh.scalar("SELECT path FROM models WHERE name = 'lua'") == "/m/lua2"


def test_migrated_old_warehouse_reopens_without_writing(old_root):
    Warehouse(old_root).schema_version
    before = (old_root / "featstore.duckdb").read_bytes()
    Warehouse(old_root).schema_version
    assert (old_root / "featstore.duckdb").read_bytes() == before


def test_edited_table_file_is_refused_on_an_old_warehouse(old_root, monkeypatch):
    import featstore.warehouse.core as module

    every = sql_files()
    edited = [(p, t + "\n-- edited\n" if p == "tables/010_correlation_runs.sql" else t) for p, t in every]
    monkeypatch.setattr(module, "sql_files", lambda: edited)
    before = (old_root / "featstore.duckdb").read_bytes()
    with pytest.raises(FeatstoreError, match="sql/tables/010_correlation_runs.sql changed after this warehouse applied it"):
        Warehouse(old_root).schema_version
    assert (old_root / "featstore.duckdb").read_bytes() == before  # nothing renamed, nothing applied
