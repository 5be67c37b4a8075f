"""`sae add --replace` and `corpus add --replace` leave no row anywhere that names the old data.

On a real (tiny) model: ingest two SAEs, correlate them both ways, explain, score and transfer;
then replace through the CLI and look at every table of the DuckDB catalog (`duckdb_tables()`),
every VARCHAR column and every `tok` column, and at the partition files on disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import run_cli, tiny_texts

from featstore.activations.ingest import ingest
from featstore.correlation.correlate import correlate
from featstore.interpret.scoring import explain, score, transfer
from featstore.saes.catalog import add_sae_folder

# Rows that may name the object after its replacement: its own new registration.
OWN_ROWS = {"sae": {("saes", "id")}, "corpus": {("corpora", "name"), ("documents", "corpus"), ("tokens", "corpus")}}


def compute_everything(wh) -> None:
    """Activations, correlation runs (base-sae on side a and on side b), samples, explanations, scores, transfer."""
    for sae in ("base-sae", "twin-sae"):
        ingest(wh, "base", corpus="evalset", sae_id=sae, device="cpu", progress=False)
    correlate(wh, "base-sae", "twin-sae", corpus="evalset", progress=False)
    correlate(wh, "twin-sae", "base-sae", corpus="evalset", stat="cofiring", progress=False)
    score(wh, "base-sae", "evalset", top=4, progress=False)
    assert transfer(wh, "base-sae", "twin-sae", "evalset", progress=False)["pairs"] > 0


def catalog_columns(con) -> dict[str, list[tuple[str, str]]]:
    """Every table of the catalog with its (column, type)."""
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()]
    return {t: con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main'",
                           [t]).fetchall() for t in tables}


def rows_naming(wh, value: str) -> dict[tuple[str, str], int]:
    """(table, column) -> rows whose VARCHAR column equals `value`, over every table."""
    found = {}
    with wh.connect(read_only=True) as con:
        for table, columns in catalog_columns(con).items():
            for column, kind in columns:
                if kind == "VARCHAR":
                    n = con.execute(f'SELECT count(*) FROM "{table}" WHERE "{column}" = ?', [value]).fetchone()[0]
                    if n:
                        found[table, column] = n
    return found


def rows_in_tok_range(wh, lo: int, hi: int) -> dict[str, int]:
    """table -> rows whose `tok` column lies in [lo, hi), over every table that has one."""
    found = {}
    with wh.connect(read_only=True) as con:
        for table, columns in catalog_columns(con).items():
            if "tok" in dict(columns):
                n = con.execute(f'SELECT count(*) FROM "{table}" WHERE tok >= ? AND tok < ?', [lo, hi]).fetchone()[0]
                if n:
                    found[table] = n
    return found


def orphans(wh) -> dict[str, int]:
    """Rows pointing at a correlation run or a score that no longer exists."""
    checks = {"correlations": "run_id NOT IN (SELECT id FROM correlation_runs)",
              "best_matches": "run_id NOT IN (SELECT id FROM correlation_runs)",
              "simulations": "score_id NOT IN (SELECT id FROM scores)"}
    return {t: n for t, where in checks.items() if (n := wh.scalar(f"SELECT count(*) FROM {t} WHERE {where}"))}


def partition_files(wh) -> set[Path]:
    return set(wh.activations_dir.rglob("*.parquet"))


def catalog_files(wh) -> set[Path]:
    return {wh.root / p for p in wh.query("SELECT path FROM activation_partitions").column(0).to_pylist()}


@pytest.fixture
def family(registered_warehouse, make_sae_folder):
    """Corpus evalset, model base with SAE base-sae and a second SAE twin-sae of the same weights."""
    add_sae_folder(registered_warehouse, "twin-sae", "base", make_sae_folder("twin"), is_primary=False)
    compute_everything(registered_warehouse)
    return registered_warehouse


def test_replacing_an_sae_or_a_corpus_leaves_no_row_of_the_old_data(family, make_sae_folder, tmp_path, tiny_tokenizer_dir):
    wh = family
    named = rows_naming(wh, "base-sae")
    for table in ("activation_partitions", "correlation_runs", "explanation_samples", "explanations", "scores"):
        assert any(t == table for t, _ in named), f"nothing in {table} to replace: the test would prove nothing"
    assert ("scores", "source_sae") in named and ("correlation_runs", "sae_b") in named
    old_files = {wh.root / p for p in wh.query("SELECT path FROM activation_partitions WHERE sae = 'base-sae'").column(0).to_pylist()}
    old_runs = set(wh.query("SELECT id FROM correlation_runs").column(0).to_pylist())

    replaced = run_cli(wh, "sae", "add", "base-sae", str(make_sae_folder("base-v2")), "--model", "base", "--replace")
    assert replaced.exit_code == 0, replaced.output

    assert set(rows_naming(wh, "base-sae")) == OWN_ROWS["sae"]
    assert orphans(wh) == {}
    assert not wh.query("SELECT * FROM correlation_runs").num_rows and old_runs
    assert not any(f.exists() for f in old_files)
    assert partition_files(wh) == catalog_files(wh)  # twin-sae's own partition stays, nothing else on disk
    # `explain` explains the new SAE's features: the old SAE's explanations are gone, none is reused.
    ingest(wh, "base", corpus="evalset", sae_id="base-sae", device="cpu", progress=False)
    again = explain(wh, "base-sae", "evalset", top=4, progress=False)
    assert again["already_explained"] == 0 and again["explained"] == 4 and again["sampled"] == 4

    compute_everything(wh)
    corpus = wh.query("SELECT tok_start, n_tokens FROM corpora WHERE name = 'evalset'").to_pylist()[0]
    lo, hi = corpus["tok_start"], corpus["tok_start"] + corpus["n_tokens"]
    assert rows_in_tok_range(wh, lo, hi).keys() >= {"tokens", "explanation_samples", "simulations"}
    old_files = catalog_files(wh)
    source = tmp_path / "new-eval.txt"
    source.write_text("\n\n".join(tiny_texts(10, seed=11)))

    replaced = run_cli(wh, "corpus", "add", "evalset", "--source", str(source), "--tokenizer", str(tiny_tokenizer_dir),
                       "--replace")
    assert replaced.exit_code == 0, replaced.output

    assert rows_in_tok_range(wh, lo, hi) == {}
    assert set(rows_naming(wh, "evalset")) == OWN_ROWS["corpus"]
    assert orphans(wh) == {}
    assert not any(f.exists() for f in old_files) and partition_files(wh) == set() == catalog_files(wh)
    assert wh.scalar("SELECT tok_start FROM corpora WHERE name = 'evalset'") >= hi  # a fresh tok range
    assert wh.scalar("SELECT count(*) FROM saes") == 2  # the SAEs are not the corpus's
