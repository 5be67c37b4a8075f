"""The real DuckDB shell (duckdb-cli 1.5.x) opens a warehouse written by the Python package, from any
directory, and its tables and views work there: no Python UDFs, no paths relative to the repo."""

from __future__ import annotations

import csv
import io
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq

from featstore.activations.importer import import_activations
from featstore.warehouse import schema, sql_dir


def shell_query(shell: str, db_path, sql: str, cwd) -> list[dict]:
    done = subprocess.run([shell, "-readonly", "-csv", str(db_path), "-c", sql], cwd=cwd, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, f"duckdb shell failed on {sql!r}: {done.stderr}"
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_shell_reads_tables_and_views_from_another_directory(registered_warehouse, tmp_path, duckdb_shell):
    wh = registered_warehouse
    acts = tmp_path / "acts.parquet"
    pq.write_table(pa.table({"tok": [0, 1, 2, 7], "feature": [3, 3, 5, 3], "act": [1.0, 3.0, 0.5, 2.0]}), acts)
    import_activations(wh, "base-sae", "evalset", acts)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    version = subprocess.run([duckdb_shell, "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("v1."), version.stdout  # the shell users get from `pip install duckdb-cli`

    corpora = shell_query(duckdb_shell, wh.db_path, "SELECT name, n_tokens FROM corpora", elsewhere)
    assert corpora == [{"name": "evalset", "n_tokens": str(wh.scalar("SELECT n_tokens FROM corpora"))}]
    assert shell_query(duckdb_shell, wh.db_path, "SELECT count(*) AS n FROM activations WHERE sae = 'base-sae'", elsewhere) == [{"n": "4"}]
    stats = shell_query(duckdb_shell, wh.db_path, "SELECT feature, n_firing, mean_act, max_act FROM feature_stats"
                        " WHERE n_firing > 0 ORDER BY feature", elsewhere)
    assert stats == [{"feature": "3", "n_firing": "3", "mean_act": "2.0", "max_act": "3.0"},
                     {"feature": "5", "n_firing": "1", "mean_act": "0.5", "max_act": "0.5"}]
    first_doc = shell_query(duckdb_shell, wh.db_path, "SELECT string_agg(text, '' ORDER BY tok) AS doc FROM token_text"
                            " WHERE corpus = 'evalset' AND doc_id = 0", elsewhere)
    python_doc = wh.scalar("SELECT string_agg(text, '' ORDER BY tok) FROM token_text WHERE doc_id = 0")
    assert first_doc == [{"doc": python_doc}]


def test_every_view_of_the_warehouse_works_in_the_shell(registered_warehouse, tmp_path, duckdb_shell):
    """All views (every owner's) must bind in the plain shell, not only in Python."""
    views = registered_warehouse.query(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' ORDER BY 1"
    ).column(0).to_pylist()
    assert {"activations", "feature_stats", "token_text"} <= set(views)
    # One shell run for all views: it stops at the first that fails to bind and names it on stderr.
    shell_query(duckdb_shell, registered_warehouse.db_path, "".join(f'SELECT * FROM "{v}" LIMIT 0;' for v in views), tmp_path)


def test_every_macro_works_in_the_shell(interp_warehouse, tmp_path, duckdb_shell):
    """Each macro runs in the plain shell with the rows Python gets: through its documented example
    (sql/<area>/schema.yml), or through the view of the same name that calls it at its defaults."""
    docs = schema.load_docs(sql_dir())
    macros = set(interp_warehouse.query(
        "SELECT function_name FROM duckdb_functions() WHERE function_type IN ('macro', 'table_macro')"
        " AND NOT internal AND schema_name = 'main'").column(0).to_pylist())
    views = set(interp_warehouse.query("SELECT view_name FROM duckdb_views() WHERE NOT internal").column(0).to_pylist())
    assert {"persistence", "top_contexts", "corr_best_matches"} <= macros
    assert not {m for m in macros if not docs[m].get("example") and m not in views}, "a macro no shell query reaches"
    counts = " UNION ALL ".join(
        f"SELECT '{name}' AS object, count(*) AS n FROM ({schema.relation(docs[name])})"
        for name in sorted(macros | views) if name in views or docs[name].get("example"))
    in_shell = shell_query(duckdb_shell, interp_warehouse.db_path, counts + " ORDER BY object", tmp_path)
    in_python = interp_warehouse.query(counts + " ORDER BY object").to_pylist()
    assert in_shell == [{"object": r["object"], "n": str(r["n"])} for r in in_python]
    assert {r["object"] for r in in_python if r["n"] > 0} >= {"corr_best_matches", "top_contexts", "persistence"}
