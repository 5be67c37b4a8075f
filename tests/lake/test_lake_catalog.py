"""featstore.warehouse.lake: a warehouse whose catalog is a DuckLake on a real PostgreSQL holds the same
tables, views and macros as the file catalog, enforces the keys, references and checks DuckLake cannot,
serialises overlapping commits with one clean loser, and gives the same correlations and persistence."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from helpers import build_lineage, error_line, run_cli, tree_hashes

from featstore.activations.ingest import ingest
from featstore.correlation.correlate import correlate, persistence_summary
from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, lake
from featstore.warehouse.queries import sql_dir
from featstore.warehouse.schema import declared_tests, load_docs

OBJECTS = """SELECT 'table' AS kind, table_name AS name FROM duckdb_tables() WHERE database_name = current_database()
             UNION ALL SELECT 'view', view_name FROM duckdb_views() WHERE database_name = current_database() AND NOT internal
             UNION ALL SELECT DISTINCT 'macro', function_name FROM duckdb_functions()
                       WHERE database_name IN (current_database(), 'memory') AND function_type IN ('macro', 'table_macro')"""


def objects(wh) -> set[tuple[str, str]]:
    return {tuple(r.values()) for r in wh.query(OBJECTS).to_pylist()} - {("table", lake.GUARD_TABLE)}


def test_a_lake_has_every_table_view_and_macro_of_the_file_catalog(lake_warehouse, warehouse):
    warehouse.create()
    assert objects(lake_warehouse) == objects(warehouse) and len(objects(warehouse)) > 80
    assert lake_warehouse.schema_version == warehouse.schema_version
    assert (lake_warehouse.root / lake.CONFIG_FILE).is_file() and not lake_warehouse.db_path.exists()


def test_the_lake_form_drops_constraints_and_keeps_them_as_checks():
    text, found = lake.lake_form("""CREATE TABLE t (
        a VARCHAR PRIMARY KEY, -- a comment, with (parentheses)
        b VARCHAR NOT NULL REFERENCES u (x), c INTEGER CHECK (c IN (1, 2)), d VARCHAR DEFAULT 'x,y',
        UNIQUE (b, c));
        INSERT OR IGNORE INTO t VALUES ('1', 'x', 1, 'z');""")
    assert "PRIMARY" not in text and "REFERENCES" not in text and "CHECK" not in text and "UNIQUE" not in text
    assert "DEFAULT 'x,y'" in text and "INSERT INTO t" in text and "OR IGNORE" not in text
    assert [(c.kind, c.columns) for c in found["t"]] == [
        ("unique", ("a",)), ("references", ("b",)), ("check", ()), ("unique", ("b", "c"))]
    assert found["t"][1].target == ("u", ("x",)) and found["t"][2].expression == "c IN (1, 2)"


@pytest.mark.parametrize("statement, problem", [
    ("INSERT INTO model_kinds VALUES ('base', 'again')", "duplicate (kind)"),
    ("INSERT INTO models (name, kind, path) VALUES ('x', 'no-such-kind', '/x')", "not in model_kinds"),
    ("INSERT INTO pipeline_steps (step, input_hash, status) VALUES ('s', 'h', 'bogus')", "CHECK (status IN"),
])
def test_declared_constraints_refuse_a_commit_and_nothing_is_written(lake_warehouse, statement, problem):
    before = lake_warehouse.query("SELECT count(*) AS n FROM model_kinds").to_pylist()
    refused = pytest.raises(FeatstoreError, match="refused: the change would break a declared constraint")
    with refused as raised, lake_warehouse.transaction() as con:
        con.execute(statement)
    assert problem in str(raised.value)
    assert lake_warehouse.query("SELECT count(*) AS n FROM model_kinds").to_pylist() == before
    assert lake_warehouse.scalar("SELECT count(*) FROM models") == 0
    assert lake_warehouse.scalar("SELECT count(*) FROM pipeline_steps") == 0


def test_of_two_overlapping_commits_the_later_loses_cleanly(lake_warehouse):
    other = Warehouse(lake_warehouse.root)
    with pytest.raises(lake.CommitConflict, match="another writer committed"), lake_warehouse.transaction() as first:
        first.execute("INSERT INTO model_kinds VALUES ('distilled', 'first writer')")
        with other.transaction() as second:  # starts after the first and commits before it
            second.execute("INSERT INTO model_kinds VALUES ('pruned', 'second writer')")
    kinds = {r["kind"] for r in lake_warehouse.query("SELECT kind FROM model_kinds").to_pylist()}
    assert "pruned" in kinds and "distilled" not in kinds
    assert other.retrying(lambda con: con.execute("INSERT INTO model_kinds VALUES ('distilled', 'rerun')")) is not None


def test_the_same_data_gives_the_same_correlations_and_persistence_on_both_catalogs(
        tmp_path, lake_warehouse, warehouse, tiny_model_dir, tiny_tokenizer_dir):
    results = []
    for wh in (warehouse, lake_warehouse):
        build_lineage(wh, tiny_model_dir, tiny_tokenizer_dir, tmp_path / wh.root.name)
        for model in ("m", "child"):
            ingest(wh, model, batch_size=4, device="cpu", progress=False)
        for stat in ("all_tokens", "cofiring"):
            correlate(wh, "m-sae", "child-sae", stat=stat, r_floor=0.1, progress=False)
        results.append({
            "acts": sorted(tuple(r.values()) for r in pq.read_table(wh.partition_files("child-sae", "c")).to_pylist()),
            "corr": wh.query("SELECT r.stat, c.feature_a, c.feature_b, round(c.r, 5) AS r FROM correlations c "
                             "JOIN correlation_runs r ON r.id = c.run_id ORDER BY ALL").to_pylist(),
            "persistence": persistence_summary(wh, 0.3).drop_columns(["parent_floor", "child_floor"]).to_pylist(),
            "views": wh.query("SELECT count(*) AS n, sum(act) AS s FROM activations").to_pylist(),
        })
    file_result, lake_result = results
    assert len(file_result["corr"]) > 50 and file_result["persistence"] and file_result["views"][0]["n"] > 1000
    assert lake_result == file_result


def test_the_tables_declared_tests_pass_on_a_filled_lake(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    ingest(lake_warehouse, "m", batch_size=4, device="cpu", progress=False)
    docs = load_docs(sql_dir())  # the tables' tests: the views are the same SQL on both (checked by equality above)
    tests = [t for t in declared_tests(docs) if docs[t.object]["area"] == "tables"]
    assert len(tests) > 60
    union = " UNION ALL ".join(f"SELECT {i} AS test FROM (SELECT 1 FROM ({t.sql}) LIMIT 1)" for i, t in enumerate(tests))
    failing = [f"{tests[r['test']].object}: {tests[r['test']].name}" for r in lake_warehouse.query(union).to_pylist()]
    assert failing == []


def test_dropping_an_sae_cascades_on_the_lake(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    for model in ("m", "child"):
        ingest(lake_warehouse, model, batch_size=4, device="cpu", progress=False)
    correlate(lake_warehouse, "m-sae", "child-sae", r_floor=0.1, progress=False)
    assert run_cli(lake_warehouse, "saes").exit_code == 0
    lake_warehouse.saes.drop("child-sae")
    wh = lake_warehouse
    assert wh.scalar("SELECT count(*) FROM activation_partitions WHERE sae = 'child-sae'") == 0
    assert wh.scalar("SELECT count(*) FROM correlation_runs") == 0 and wh.scalar("SELECT count(*) FROM correlations") == 0
    assert wh.scalar("SELECT count(*) FROM activations WHERE sae = 'child-sae'") == 0
    assert wh.scalar("SELECT count(*) FROM activations WHERE sae = 'm-sae'") > 0


def test_user_sql_on_a_lake_is_read_only_and_sandboxed(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    ingest(lake_warehouse, "m", batch_size=4, device="cpu", progress=False)
    assert lake_warehouse.sql("SELECT count(*) AS n FROM activations").to_pylist()[0]["n"] > 0
    with pytest.raises(FeatstoreError, match="refused"):
        lake_warehouse.sql("DELETE FROM models")
    with pytest.raises(FeatstoreError, match="read-only and writes no files"):
        lake_warehouse.sql("SELECT * FROM read_csv('/etc/passwd')")


def test_init_refuses_bad_catalogs_in_one_line_and_writes_nothing(tmp_path, postgres, lake_url):
    target = tmp_path / "new"
    for args, message in [
        (("--catalog", "mysql://x@y/z"), "is not a PostgreSQL URL"),
        (("--catalog", postgres.url("no_such_database")), "cannot open the DuckLake catalog"),
        (("--data-path", "/tmp/x"), "--data-path is for a DuckLake catalog"),
    ]:
        done = run_cli(target, "init", *args)
        assert done.exit_code == 1 and message in error_line(done), done.output
        assert "featstore-test" not in done.output  # the password is never printed
        assert not (target / lake.CONFIG_FILE).exists()
    filewh = tmp_path / "filewh"
    assert run_cli(filewh, "init").exit_code == 0 and (filewh / "featstore.duckdb").is_file()
    before = tree_hashes(filewh)
    done = run_cli(filewh, "init", "--catalog", lake_url)
    assert done.exit_code == 1 and "already holds the file catalog" in error_line(done)
    assert tree_hashes(filewh) == before
    (target).mkdir()
    (target / lake.CONFIG_FILE).write_text("[catalog]\nkind = 'nope'\n")
    done = run_cli(target, "models")
    assert done.exit_code == 1 and "is not a featstore catalog file" in error_line(done)


def test_a_copied_lake_warehouse_reattaches_and_reads_its_own_files(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    import shutil

    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    ingest(lake_warehouse, "m", batch_size=4, device="cpu", progress=False)
    expected = lake_warehouse.query("SELECT count(*) AS n, sum(act) AS s FROM activations").to_pylist()
    copy = tmp_path / "mounted-elsewhere"
    shutil.copytree(lake_warehouse.root, copy)
    shutil.rmtree(lake_warehouse.root / "activations")  # only the copy's files remain
    moved = Warehouse(copy)
    assert moved.query("SELECT count(*) AS n, sum(act) AS s FROM activations").to_pylist() == expected
    done = run_cli(copy, "relocate")
    assert done.exit_code == 0, done.output
    assert all(str(copy) in str(f) for f in moved.activation_files())
    assert Warehouse(copy).query("SELECT count(*) AS n, sum(act) AS s FROM activations").to_pylist() == expected


def test_maintain_expires_snapshots_and_removes_replaced_files(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    ingest(lake_warehouse, "m", batch_size=4, device="cpu", progress=False)
    first = lake_warehouse.activation_files()
    ingest(lake_warehouse, "m", batch_size=4, device="cpu", progress=False, context=16)  # replaces the partition
    assert all(f.exists() for f in first)  # kept for readers of older snapshots
    done = run_cli(lake_warehouse, "maintain", "--older-than", "0")
    assert done.exit_code == 0 and "removed 1 partition file(s)" in done.output, done.output
    assert not any(f.exists() for f in first) and all(f.exists() for f in lake_warehouse.activation_files())
    snapshots = done.output.split("snapshots ")[1].split(" -> ")
    assert int(snapshots[1]) < int(snapshots[0])


def test_the_duckdb_shell_recipe_opens_a_lake_with_its_views_and_macros(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    import subprocess
    from pathlib import Path

    import duckdb

    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    for model in ("m", "child"):
        ingest(lake_warehouse, model, batch_size=4, device="cpu", progress=False)
    correlate(lake_warehouse, "m-sae", "child-sae", r_floor=0.1, progress=False)
    done = run_cli(lake_warehouse, "shell-init")
    assert done.exit_code == 0 and "ATTACH 'ducklake:postgres:" in done.output
    init = tmp_path / "init.sql"
    init.write_text(done.output)
    shell = Path(duckdb.__file__).parents[1] / "duckdb_cli" / "duckdb"  # the shell of the lake's duckdb version
    query = "SELECT count(*) FROM activations; SELECT parent_persist + parent_disappear FROM persistence_summary(0.3);"
    result = subprocess.run([str(shell), "-csv", "-noheader", "-init", str(init), "-c", query],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    expected = [lake_warehouse.scalar("SELECT count(*) FROM activations"),
                lake_warehouse.scalar("SELECT parent_persist + parent_disappear FROM persistence_summary(0.3)")]
    assert [int(line) for line in result.stdout.split()] == expected and expected[0] > 0


def test_the_browser_and_the_exports_read_a_lake(tmp_path, lake_warehouse, tiny_model_dir, tiny_tokenizer_dir):
    from featstore.browser.app import create_app

    build_lineage(lake_warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    for model in ("m", "child"):
        ingest(lake_warehouse, model, batch_size=4, device="cpu", progress=False)
    correlate(lake_warehouse, "m-sae", "child-sae", r_floor=0.1, progress=False)
    client = create_app(lake_warehouse).test_client()
    for page in ("/", "/sae/m-sae", "/sae/m-sae/feature/0", "/edge/m/child", "/model/m", "/sql?q=SELECT+count(*)+FROM+models"):
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
    assert "child" in client.get("/").get_data(as_text=True) and "m-sae" in client.get("/sae/m-sae/feature/0").get_data(as_text=True)
    layout = tmp_path / "layout"
    done = run_cli(lake_warehouse, "export", "--engine-layout", str(layout))
    assert done.exit_code == 0, done.output
    exported = pq.read_table(layout / "correlation_runs.parquet")
    assert exported.num_rows == 1 and len(list((layout / "activations").rglob("*.parquet"))) == 2
    done = run_cli(lake_warehouse, "export", "persistence_summary", "--format", "csv", "--out", str(tmp_path / "out"))
    assert done.exit_code == 0, done.output
