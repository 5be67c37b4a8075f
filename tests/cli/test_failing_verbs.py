"""Failure behaviour of the warehouse verbs: one-line error, exit status 1, warehouse exactly as before.

Also: an import killed midway leaves no partial partition visible and can be rerun, and a reader
can query the warehouse while an import writes its Parquet file.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import run_cli, tiny_texts

import featstore.warehouse.core as warehouse_module
from featstore.activations.importer import import_activations
from featstore.text.tokenizer import train_bpe


def snapshot(wh) -> dict:
    """Every table's rows (sorted) and every file under the warehouse except the DuckDB file itself."""
    with wh.connect(read_only=True) as con:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        rows = {t: sorted(map(repr, con.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables}
        rows["activations view"] = sorted(map(repr, con.execute("SELECT * FROM activations").fetchall()))
    files = sorted((str(p.relative_to(wh.root)), p.stat().st_size) for p in wh.root.rglob("*")
                   if p.is_file() and not p.name.startswith("featstore.duckdb"))
    return {"rows": rows, "files": files}


@pytest.fixture
def populated(registered_warehouse, tmp_path):
    """The registered warehouse plus one committed partition, so 'unchanged' covers activations too."""
    file = tmp_path / "good.parquet"
    pq.write_table(pa.table({"tok": [0, 1, 5], "feature": [0, 3, 15], "act": [1.0, 0.5, 2.0]}), file)
    import_activations(registered_warehouse, "base-sae", "evalset", file)
    return registered_warehouse


def parquet(tmp_path, name="bad.parquet", **columns) -> str:
    path = tmp_path / name
    pq.write_table(pa.table(columns), path)
    return str(path)


def import_args(file: str, sae: str = "base-sae", corpus: str = "evalset") -> list[str]:
    return ["import-activations", "--sae", sae, "--corpus", corpus, file]


BAD_IMPORTS = {
    "nan act": (dict(tok=[0, 1], feature=[1, 2], act=[1.0, float("nan")]), "NaN or infinite act"),
    "inf act": (dict(tok=[0, 1], feature=[1, 2], act=[float("inf"), 1.0]), "NaN or infinite act"),
    "missing column": (dict(tok=[0], feature=[1]), r"lacks column\(s\) act"),
    "no key columns": (dict(feature=[1], act=[1.0]), r"lacks column\(s\) doc_id, pos"),
    "string tok": (dict(tok=["0"], feature=[1], act=[1.0]), "column tok has type string, expected an integer"),
    "integer act": (dict(tok=[0], feature=[1], act=[1]), "column act has type int64, expected a float"),
    "feature too big": (dict(tok=[0], feature=[16], act=[1.0]), r"feature outside 0..15 \(the SAE's d_sae is 16\)"),
    "negative feature": (dict(tok=[0], feature=[-1], act=[1.0]), "feature outside 0..15"),
    "tok outside corpus": (dict(tok=[0, 10**6], feature=[1, 1], act=[1.0, 1.0]), "outside corpus 'evalset'"),
    "unknown doc": (dict(doc_id=[999], pos=[0], feature=[1], act=[1.0]), "unknown doc_id or pos"),
    "pos past doc end": (dict(doc_id=[0], pos=[10**5], feature=[1], act=[1.0]), "unknown doc_id or pos"),
    "duplicate rows": (dict(tok=[3, 3], feature=[1, 1], act=[1.0, 2.0]), "appear more than once"),
    "null act": (dict(tok=[0, 1], feature=[1, 2], act=[1.0, None]), "null values"),
}


def test_bad_activation_files_change_nothing(populated, tmp_path):
    before = snapshot(populated)
    for case, (columns, message) in BAD_IMPORTS.items():
        result = run_cli(populated, *import_args(parquet(tmp_path, f"{case}.parquet", **columns)))
        assert result.exit_code == 1, case
        assert result.output.count("\n") == 1 and result.output.startswith("error: "), (case, result.output)
        assert re.search(message, result.output), (case, result.output)
        assert snapshot(populated) == before, case


def test_bad_names_and_inputs_of_every_verb_change_nothing(populated, tmp_path, tiny_model_dir, tiny_tokenizer_dir,
                                                           make_sae_folder):
    good = parquet(tmp_path, "good2.parquet", tok=[0], feature=[1], act=[1.0])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n   \n")
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("hello")
    narrow = make_sae_folder("narrow", d_in=32)
    tok = str(tiny_tokenizer_dir)
    cases = [
        (import_args(good, sae="ghost"), "unknown SAE 'ghost'; see `featstore saes`"),
        (import_args(good, corpus="ghost"), "unknown corpus 'ghost'; see `featstore corpora`"),
        (import_args(str(not_parquet)), "is not a readable Parquet file"),
        (import_args(str(tmp_path / "nowhere.parquet")), "does not exist"),
        (["corpus", "add", "e", "--source", str(empty), "--tokenizer", tok], "gave no tokens"),
        (["corpus", "add", "evalset", "--source", str(empty), "--tokenizer", tok], "corpus 'evalset' already exists"),
        (["corpus", "add", "x", "--source", str(tmp_path / "missing.txt"), "--tokenizer", tok], "not an existing file"),
        (["corpus", "add", "x", "--source", str(empty), "--tokenizer", str(tmp_path)], "cannot load tokenizer"),
        (["corpus", "add", "bad name", "--source", str(empty), "--tokenizer", tok], "invalid corpus name"),
        (["sae", "add", "narrow", str(narrow), "--model", "base"], "SAE d_in 32 does not match"),
        (["sae", "add", "s", str(make_sae_folder("s")), "--model", "ghost"], "unknown model 'ghost'"),
        (["sae", "add", "base-sae", str(make_sae_folder("again")), "--model", "base"], "SAE 'base-sae' already exists"),
        (["model", "add", "m", str(tiny_model_dir), "--kind", "finetune", "--parent", "ghost"], "unknown parent model 'ghost'"),
        (["model", "add", "m", str(tiny_model_dir), "--kind", "merge", "--parent", "base"], "a merge needs exactly two"),
        (["model", "add", "m", str(tmp_path), "--kind", "base"], "has no config.json"),
    ]
    before = snapshot(populated)
    for args, message in cases:
        result = run_cli(populated, *args)
        assert result.exit_code == 1, (args, result.output)
        last = result.output.rstrip("\n").splitlines()[-1]  # corpus add may print a progress bar first
        assert last.startswith("error: ") and message in last, (args, result.output)
        assert "Traceback" not in result.output
        assert snapshot(populated) == before, args


def test_activations_of_another_tokenizers_corpus_are_refused(populated, tmp_path):
    other_tok = tmp_path / "other_tok"
    train_bpe(tiny_texts(50, seed=5), vocab_size=300, out_dir=other_tok)
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on a mat")
    from featstore.text.slices import add_corpus

    add_corpus(populated, "other", str(text), other_tok)
    before = snapshot(populated)
    result = run_cli(populated, *import_args(parquet(tmp_path, tok=[10**3], feature=[1], act=[1.0]), corpus="other"))
    assert result.exit_code == 1 and "tokenizer differs from corpus 'other'" in result.output
    assert snapshot(populated) == before


class FailingWriter(pq.ParquetWriter):
    """A ParquetWriter that dies after its first batch, as a killed process would."""

    def write_table(self, table, *args, **kwargs):
        super().write_table(table, *args, **kwargs)
        raise KeyboardInterrupt("killed midway")


def test_import_killed_midway_leaves_the_old_partition_and_can_be_rerun(populated, tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    new = parquet(tmp_path, "new.parquet", tok=np.arange(200), feature=rng.integers(0, 16, 200),
                  act=rng.uniform(0.1, 1.0, 200))
    before = snapshot(populated)
    monkeypatch.setattr(warehouse_module.pq, "ParquetWriter", FailingWriter)
    with pytest.raises(KeyboardInterrupt):
        import_activations(populated, "base-sae", "evalset", new, batch_rows=20)
    assert snapshot(populated) == before  # no temp file left, old partition still the visible one

    # A hard kill (no cleanup) leaves a hidden temp file; it is invisible and the rerun sweeps it.
    folder = populated.partition_dir("base-sae", "evalset")
    (folder / ".part-deadbeef0000.parquet.tmp").write_bytes(b"partial")
    assert populated.scalar("SELECT count(*) FROM activations") == 3
    monkeypatch.undo()
    import_activations(populated, "base-sae", "evalset", new, batch_rows=20)
    assert populated.scalar("SELECT count(*) FROM activations") == 200
    assert [p.name.startswith("part-") for p in folder.iterdir()] == [True]


def test_readers_can_query_while_an_import_writes(populated, tmp_path, monkeypatch, duckdb_shell):
    shell = duckdb_shell
    seen = []

    class ReaderCheckingWriter(pq.ParquetWriter):
        def write_table(self, table, *args, **kwargs):
            super().write_table(table, *args, **kwargs)
            if not seen:  # mid-write: another process opens the warehouse and reads the old partition
                seen.append(subprocess.run(
                    [shell, "-readonly", "-noheader", "-csv", str(populated.db_path), "-c",
                     "SELECT count(*) FROM activations"],
                    capture_output=True, text=True, timeout=60,
                ))

    monkeypatch.setattr(warehouse_module.pq, "ParquetWriter", ReaderCheckingWriter)
    new = parquet(tmp_path, "new.parquet", tok=np.arange(100), feature=np.zeros(100, np.int32), act=np.ones(100))
    import_activations(populated, "base-sae", "evalset", new, batch_rows=10)
    assert seen and seen[0].returncode == 0, seen and seen[0].stderr
    assert seen[0].stdout.strip() == "3"
    assert populated.scalar("SELECT count(*) FROM activations") == 100


def test_failed_sae_replace_keeps_the_old_sae_and_its_partition(populated, make_sae_folder):
    bad = make_sae_folder("bad-shapes", shapes={"b_enc": (15,)})
    before = snapshot(populated)
    result = run_cli(populated, "sae", "add", "base-sae", str(bad), "--model", "base", "--replace")
    assert result.exit_code == 1 and "b_enc has shape (15,), expected (16,)" in result.output
    assert snapshot(populated) == before
    assert all(f.exists() for f in populated.partition_files("base-sae", "evalset"))
