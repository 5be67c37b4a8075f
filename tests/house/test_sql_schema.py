"""sql/ documents itself, as a dbt project does: every table, view and macro has a schema.yml entry
whose columns are exactly the ones the warehouse has, and the tests declared there (unique, not_null,
accepted_values, relationships) hold on a synthetic warehouse built from the conftest fixtures."""

from __future__ import annotations

import json
import zipfile

import pytest
from helpers import copy_interp

from featstore.errors import FeatstoreError
from featstore.interpret.scoring import shuffled_baseline, transfer
from featstore.warehouse import Warehouse, schema, sql_dir, sql_files

DOCS = schema.load_docs(sql_dir())
TESTS = schema.declared_tests(DOCS)


def fill_rest(wh: Warehouse) -> None:
    """Beyond the interp fixture: a merge of base and child, scores of every kind, a sweep, step rows."""
    transfer(wh, "toy", "toy_child", progress=False)
    shuffled_baseline(wh, "toy", progress=False)
    with wh.transaction() as con:
        con.execute("UPDATE models SET tokenizer = 'synthfp', train_corpus = 'synth', metrics = ?",
                    [json.dumps({"val_loss": {"lua": 2.0, "stories": 2.5}, "val_accuracy": {"lua": 0.4, "stories": 0.3}})])
        con.execute("INSERT INTO models (name, kind, path, tokenizer) VALUES ('merged', 'merge', '/m/merged', 'synthfp')")
        con.execute("INSERT INTO lineage VALUES ('base', 'merged', 'merge', 0, 'slerp', 0.5),"
                    " ('child', 'merged', 'merge', 1, 'slerp', 0.5)")
        con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, k)"
                    " VALUES ('toy_merged', 'merged', 'blocks.0.mlp.hook_post', 0, 64, 32, 'topk', 4)")
        con.execute("UPDATE saes SET metrics = ?", [json.dumps({"mse": 0.1, "fvu": 0.1, "l0": 1.2, "dead_fraction": 0.0,
                                                               "ce_loss_recovered": 0.95, "eval_tokens": 1000})])
        for run_id, parent, offset in ((2, "toy", 0), (3, "toy_child", 10)):
            con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                        " VALUES (?, ?, 'toy_merged', 'synth', 'all_tokens', 0.2, 100, 7)", [run_id, parent])
            for f in range(7):
                r = 0.9 if f % 2 == 0 else 0.5
                con.execute("INSERT INTO best_matches VALUES (?, 'a', ?, ?, ?), (?, 'b', ?, ?, ?)",
                            [run_id, f + offset, f, r, run_id, f, f + offset, r])
        for t in (0.0, 0.5, 1.0):
            for eval_set, acc in (("base", 0.5 - 0.2 * t), ("child", 0.3 + 0.2 * t)):
                con.execute("INSERT INTO merge_sweep (model_a, model_b, method, t, evaluated, eval_set, corpus, n_tokens,"
                            " loss, accuracy) VALUES ('base', 'child', 'slerp', ?, 'merge', ?, 'synth', 100, 2.0, ?)",
                            [t, eval_set, acc])
        con.execute("INSERT INTO merge_sweep (model_a, model_b, method, t, evaluated, eval_set, corpus, n_tokens, loss,"
                    " accuracy) VALUES ('base', 'child', 'slerp', NULL, 'base', 'child', 'synth', 100, 3.0, 0.2)")
        con.execute("INSERT INTO pipeline_steps (step, input_hash, status, seconds, started_at, finished_at)"
                    " VALUES ('train-base', 'h1', 'done', 12.5, now(), now()), ('merge', 'h2', 'running', NULL, now(), NULL)")
        con.execute("INSERT INTO llm_cache (prompt_hash, backend, task, request, result)"
                    " VALUES ('p1', 'openai:m', 'explain', '{}', '{\"text\": \"x\"}')")
        con.execute("INSERT INTO ingest_parts (run, part, parts, sae, corpus, path, n_rows) VALUES"
                    " ('toy@synth-1a2b', 0, 2, 'toy', 'synth', 'staging/shards/toy@synth-1a2b/part-00000-of-00002.parquet', 10)")
        fill_matching(con)
        fill_crosscoder(con)
        fill_causal(con)
    fill_lineage_init(wh)


def fill_lineage_init(wh: Warehouse) -> None:
    """A lineage-initialised SAE of child started from toy, firing like toy_child, with its features' drift and
    decoder-cosine evidence against toy (features 0-3 kept)."""
    with wh.transaction() as con:
        con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, is_primary, init_from)"
                    " SELECT 'toy_lineage', model, hook_point, layer, d_in, d_sae, architecture, false, 'toy' FROM saes WHERE id = 'toy_child'")
        con.execute("INSERT INTO sae_drift SELECT 'toy_lineage', f, CASE WHEN f % 3 = 0 THEN 0.95 ELSE 0.4 END, 0.8"
                    " FROM range((SELECT d_sae FROM saes WHERE id = 'toy_child')) t(f)")
        con.execute("INSERT INTO match_runs (id, sae_a, sae_b, corpus, method, top_k, floor, n_pairs)"
                    " VALUES (6, 'toy', 'toy_lineage', NULL, 'decoder_cosine', 5, 0.5, 7)")
        con.execute("INSERT INTO match_pairs SELECT 6, f, f, CASE WHEN f < 4 THEN 0.95 ELSE 0.2 END FROM range(7) t(f)")
    rows = wh.query("SELECT tok, feature, act FROM activations WHERE sae = 'toy_child' AND corpus = 'synth'")
    wh.write_partition("toy_lineage", "synth", [rows], wh.partitions.get("toy_child", "synth")["n_tokens"], origin="import")


def fill_causal(con) -> None:
    """A causal check of toy -> toy_child on synth: a pair acting alike, one with an inert child feature, one
    sampled pair that never fires in the blocks read."""
    con.execute("INSERT INTO match_runs (id, sae_a, sae_b, corpus, method, top_k, floor, n_pairs)"
                " VALUES (5, 'toy', 'toy_child', 'synth', 'causal', 2, -1.0, 2)")
    con.execute("INSERT INTO match_pairs VALUES (5, 0, 10, 0.9), (5, 1, 11, 0.0)")
    con.execute("INSERT INTO causal_effects VALUES (5, 0, 10, 'all_tokens', 0.95, 'top', 20, 12, 15, 0.9, 0.8, 0.1, 0.12, 0.02, 0.03),"
                " (5, 1, 11, 'all_tokens', 0.9, 'top', 8, 8, 0, 0.0, NULL, 0.05, NULL, 0.01, 0.0),"
                " (5, 6, 16, 'all_tokens', 0.3, 'sample', 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL)")


def fill_crosscoder(con) -> None:
    """A crosscoder of base and child with a latent of each class and its evidence for toy -> toy_child."""
    con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, k, is_primary, metrics)"
                " VALUES ('toy_xc', 'child', 'blocks.0.mlp.hook_post', 0, 64, 5, 'crosscoder', 2, false, ?)",
                [json.dumps({"fvu_parent": 0.1, "fvu_child": 0.2, "l0": 2.0})])
    con.execute("INSERT INTO crosscoders VALUES ('toy_xc', 'base', 'child', 'batchtopk', 'synth')")
    con.execute("INSERT INTO crosscoder_latents VALUES ('toy_xc', 0, 1, 1, 0.5, 0.2, 'shared', NULL, NULL, NULL),"
                " ('toy_xc', 1, 1, 0, 0, 0.1, 'parent_only', 0.01, 0.02, false), ('toy_xc', 2, 0, 1, 1, 0.1, 'child_only', 0.9, 0.1, true),"
                " ('toy_xc', 3, 1, 0.5, 0.25, 0.1, 'intermediate', NULL, NULL, NULL), ('toy_xc', 4, 1, 1, 0.5, 0, 'dead', NULL, NULL, NULL)")
    con.execute("INSERT INTO match_runs (id, sae_a, sae_b, corpus, method, top_k, floor, n_pairs)"
                " VALUES (3, 'toy', 'toy_child', NULL, 'crosscoder', 1, 0.0, 2)")
    con.execute("INSERT INTO match_pairs VALUES (3, 0, 10, 0.8), (3, 4, 14, 0.3)")


def fill_matching(con) -> None:
    """A seed replica of toy (5 of 7 features persist into it) and decoder-cosine evidence for toy -> toy_child
    that disagrees with the correlations on features 2, 3 and 6, with one-to-one assignments."""
    con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, is_primary, seed, seed_of)"
                " VALUES ('toy_seed1', 'base', 'blocks.0.mlp.hook_post', 0, 64, 32, 'relu', false, 1, 'toy')")
    con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                " VALUES (4, 'toy', 'toy_seed1', 'synth', 'all_tokens', 0.2, 100, 7)")
    con.execute("INSERT INTO match_runs (id, sae_a, sae_b, corpus, method, top_k, floor, n_pairs)"
                " VALUES (1, 'toy', 'toy_child', NULL, 'decoder_cosine', 5, 0.5, 7), (2, 'toy', 'toy_seed1', NULL, 'decoder_cosine', 5, 0.5, 7)")
    for f in range(7):
        r = 0.9 if f < 5 else 0.3
        con.execute("INSERT INTO best_matches VALUES (4, 'a', ?, ?, ?), (4, 'b', ?, ?, ?)", [f, f, r, f, f, r])
        cosine = 0.95 if f in (0, 1, 3) else 0.3
        con.execute("INSERT INTO match_pairs VALUES (1, ?, ?, ?), (2, ?, ?, 0.9)", [f, f + 10, cosine, f, f])
        con.execute("INSERT INTO match_assignments VALUES ('toy', 'toy_child', NULL, 'decoder_cosine', ?, ?, ?)",
                    [f, f + 10, cosine])


@pytest.fixture(scope="module")
def filled(tmp_path_factory, interp_template):
    wh = copy_interp(Warehouse(tmp_path_factory.mktemp("schema") / "wh"), interp_template)
    fill_rest(wh)
    return wh


def catalog_objects(wh: Warehouse) -> set[str]:
    """Every table, view and macro the warehouse holds, except the migration records."""
    rows = wh.query(
        "SELECT table_name AS name FROM duckdb_tables() WHERE NOT internal AND NOT temporary"
        " UNION SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary"
        " UNION SELECT function_name FROM duckdb_functions() WHERE function_type IN ('macro', 'table_macro')"
        " AND NOT internal AND schema_name = 'main'"
    ).column(0).to_pylist()
    return set(rows) - {"schema_migrations"}


def test_every_object_is_documented_once(filled):
    objects = {schema.SqlFile(p, t).object for p, t in sql_files()} | schema.EXTERNAL
    assert catalog_objects(filled) == objects
    assert not objects - set(DOCS), "no entry in any sql/<area>/schema.yml for these; document them"
    assert not set(DOCS) - objects, "documented in a schema.yml but created by no sql/ file"


@pytest.mark.parametrize("name", sorted(DOCS))
def test_documented_columns_are_the_real_columns(filled, name):
    entry = DOCS[name]
    assert entry.get("description"), f"{name}: no description"
    with filled.connect() as con:
        real = [row[0] for row in con.execute(f"DESCRIBE {schema.relation(entry)}").fetchall()]
        n_rows = con.execute(f"SELECT count(*) FROM ({schema.relation(entry)})").fetchone()[0]
    documented = [c["name"] for c in entry.get("columns", [])]
    assert documented == real, f"{name}: schema.yml columns differ from the object's"
    assert all(c.get("description") for c in entry["columns"]), f"{name}: a column has no description"
    assert n_rows > 0, f"{name} is empty on the synthetic warehouse, so its tests would prove nothing"


@pytest.mark.parametrize("check", TESTS, ids=[f"{t.object}:{t.name}" for t in TESTS])
def test_declared_test_holds(filled, check):
    with filled.connect() as con:
        failures = con.execute(f"{check.sql} LIMIT 5").fetchall()
    assert failures == [], f"{check.object}: {check.name} fails on {failures}"


def test_every_kind_of_declared_test_is_used_and_can_fail(filled):
    assert {t.name.split("(")[0] for t in TESTS} == {"unique", "not_null", "accepted_values", "relationships"}
    broken = {"name": "lineage", "columns": [{"name": "relation", "tests": [{"accepted_values": {"values": ["merge"]}}]},
                                            {"name": "child", "tests": [{"relationships": {"to": "saes", "field": "id"}}]},
                                            {"name": "merge_t", "tests": ["not_null"]}],
              "tests": [{"unique": ["parent"]}]}
    with filled.connect() as con:
        for check in schema.declared_tests({"lineage": broken}):
            assert con.execute(check.sql).fetchall(), f"{check.name} should fail on this lineage"


def test_views_and_macros_apply_in_dependency_order():
    order = [schema.SqlFile(p, t).object for p, t in sql_files()]
    assert order.index("edge_matches") < order.index("persistence") < order.index("persistence_summary") \
        < order.index("run_persistence")
    tables = [p for p, _ in sql_files() if p.startswith("tables/")]
    assert tables == sorted(tables) and order[len(tables)] not in {o for o in order[:len(tables)]}


def test_a_cycle_is_reported_in_one_line():
    files = [schema.SqlFile("a/x.sql", "CREATE OR REPLACE VIEW x AS SELECT * FROM y;"),
             schema.SqlFile("a/y.sql", "CREATE OR REPLACE VIEW y AS SELECT * FROM z;"),
             schema.SqlFile("b/z.sql", "CREATE OR REPLACE VIEW z AS SELECT * FROM x;")]
    with pytest.raises(FeatstoreError, match=r"^sql/ views and macros reference each other in a cycle: x -> y -> z -> x$"):
        schema.ordered(files)


@pytest.mark.parametrize("path, text, message", [
    ("report/foo.sql", "CREATE OR REPLACE VIEW bar AS SELECT 1;", "must only CREATE OR REPLACE the view or macro foo"),
    ("report/foo.sql", "CREATE TABLE foo (a INT);", "tables go in sql/tables/"),
    ("tables/030_foo.sql", "CREATE TABLE bar (a INT);", "does not create or alter table foo"),
    ("450_foo.sql", "CREATE OR REPLACE VIEW foo AS SELECT 1;", "move it to sql/tables/NNN_<table>.sql or sql/<area>/"),
])
def test_a_misnamed_file_is_refused(tmp_path, path, text, message):
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text(text)
    with pytest.raises(FeatstoreError, match=message):
        schema.discover(tmp_path)


def test_queries_folder_is_never_applied(tmp_path):
    (tmp_path / "queries" / "saes").mkdir(parents=True)
    (tmp_path / "queries" / "saes" / "drop.sql").write_text("DELETE FROM saes WHERE id = ?")
    (tmp_path / "warehouse").mkdir()
    (tmp_path / "warehouse" / "v.sql").write_text("CREATE OR REPLACE VIEW v AS SELECT 1 AS a;")
    assert [f.path for f in schema.discover(tmp_path)] == ["warehouse/v.sql"]


def test_sql_folder_reads_the_same_from_a_wheel(tmp_path):
    """In a wheel sql/ is package data read through importlib.resources: a Traversable, as a zip is."""
    archive = tmp_path / "featstore.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sql_dir().rglob("*"):
            if path.is_file():
                z.write(path, f"featstore/sql/{path.relative_to(sql_dir())}")
    packaged = zipfile.Path(archive, "featstore/sql/")
    assert schema.sql_files(packaged) == sql_files()
    assert schema.load_docs(packaged) == DOCS


def test_pipeline_hashes_objects_by_name_not_by_file():
    files = sql_files()
    moved = [(p.replace("persistence/", "lineage/").replace("tables/012_", "tables/112_"), t) for p, t in files]
    assert schema.sources(["persistence_summary"], moved) == schema.sources(["persistence_summary"], files)
    names = [n for n, _ in schema.sources(["persistence_summary"], files)]
    assert {"persistence", "edge_matches", "best_matches", "lineage"} <= set(names) and "figure6" not in names
    edited = [(p, t + "\n-- edited" if p.endswith("/edge_matches.sql") else t) for p, t in files]
    assert schema.sources(["persistence_summary"], edited) != schema.sources(["persistence_summary"], files)
    with pytest.raises(FeatstoreError, match="no sql/ file creates an object named 'persistance'"):
        schema.sources(["persistance"], files)


def test_a_changed_view_is_reapplied_with_everything_built_on_it(warehouse):
    files = sql_files()
    with warehouse.connect() as con:
        assert schema.migrate(con, files) == []
        edited = [(p, t + "\n-- edited\n" if p.endswith("/edge_matches.sql") else t) for p, t in files]
        again = {p.split("/")[-1][:-4] for p in schema.migrate(con, edited)}
        assert {"edge_matches", "persistence", "persistence_summary", "run_persistence", "feature_families",
                "family_members", "figure6", "showcase_matches"} <= again
        assert not again & {"run_steps", "feature_stats", "corr_gaps", "token_text"}
        moved = [(p.replace("zoo/", "models/"), t) for p, t in edited]
        assert schema.migrate(con, moved) == ["models/merge_sweep_monotone.sql", "models/model_validation.sql"]
        recorded = {r[0] for r in con.execute("SELECT file FROM schema_migrations").fetchall()}
    assert recorded == {p for p, _ in moved}


def test_every_value_the_library_accepts_is_a_lookup_row(warehouse):
    """The library checks values first (one-line errors); the lookup tables must not refuse what it accepts."""
    from featstore.correlation.statistics import statistic_names
    from featstore.models.catalog import MODEL_KINDS, RELATIONS
    from featstore.saes.architectures import LOADABLE

    accepted = {"model_kinds": MODEL_KINDS, "lineage_relations": RELATIONS, "sae_architectures": LOADABLE,
                "correlation_stats": statistic_names()}
    warehouse.create()  # reads never create a warehouse
    for table, values in accepted.items():
        rows = set(warehouse.query(f"SELECT * FROM {table}").column(0).to_pylist())
        assert set(values) <= rows, f"{table} lacks {set(values) - rows}: add them in a new sql/tables/ file"


def test_every_column_entry_has_only_name_description_and_tests():
    """An unquoted comma inside a YAML flow mapping (`{name: x, description: a, b}`) cuts the description
    short and turns the rest into keys of their own; quoting the text keeps it whole."""
    stray = {f"{obj}.{column['name']}": sorted(set(column) - {"name", "description", "tests"})
             for obj, entry in schema.load_docs(sql_dir()).items() for column in entry.get("columns", [])
             if set(column) - {"name", "description", "tests"}}
    assert not stray, f"schema.yml column entries with stray keys (quote their descriptions): {stray}"


def test_the_report_and_a_feature_page_show_the_crosscoder_the_causal_checks_and_the_drift(filled):
    from featstore.browser.app import create_app
    from featstore.report.build import build_report

    report = build_report(filled).read_text()
    assert "<h3>Crosscoders</h3>" in report and "<h3>Causal checks</h3>" in report
    assert "<h3>Lineage-initialised SAEs</h3>" in report and "toy_lineage" in report
    assert "<h3>The initialisation control</h3>" in report
    page = create_app(filled).test_client().get("/sae/toy/feature/1").get_data(as_text=True)
    assert "<h3>Causal checks</h3>" in page and '"sae/toy_child/feature/11"' in page
    edge = create_app(filled).test_client().get("/edge/base/child?corpus=synth").get_data(as_text=True)
    assert "<h2>Match methods</h2>" in edge and "<td>causal</td>" in edge and "<td>decoder_cosine</td>" in edge
    worst = filled.query("SELECT feature FROM method_disagreements() WHERE child = 'child' AND method_b = 'decoder_cosine'").column(0)
    assert all(f'"sae/toy/feature/{f}"' in edge for f in worst.to_pylist()) and len(worst) > 0
    from featstore.browser.export import report_with_pages

    linked = report_with_pages(filled, most_frequent=1).read_text()
    worst = filled.query("SELECT feature FROM method_disagreements(n := 2) WHERE child = 'child' AND method_b = 'causal'"
                         " AND method_a = 'all_tokens'").column(0).to_pylist()
    assert worst and all(f"<a href='sae/toy/feature/{f}.html'>{f}</a>" in linked for f in worst)
    page = create_app(filled).test_client().get("/sae/toy_lineage/feature/3").get_data(as_text=True)
    assert "Lineage-initialised: this feature started as" in page and '"sae/toy/feature/3"' in page


def test_the_initialisation_control_sets_each_pair_beside_the_floor(filled):
    rows = filled.query("SELECT * FROM init_control WHERE method = 'decoder_cosine' ORDER BY init").to_pylist()
    assert [(r["init"], r["child_sae"]) for r in rows] == [("independent", "toy_child"), ("lineage", "toy_lineage")]
    live = filled.query("SELECT feature FROM feature_stats WHERE sae = 'toy' AND corpus = 'synth' AND n_firing > 0").column(0).to_pylist()
    lineage = rows[1]
    assert lineage["live_features"] == len(live) and lineage["persisting"] == len([f for f in live if f < 4])
    assert lineage["floor_share"] == rows[0]["floor_share"] is not None  # toy's seed replica, decoder cosine
