"""Document sources: every source form yields (origin, text) in a fixed order, bad ones fail clearly."""

from __future__ import annotations

import json
import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featstore.errors import FeatstoreError
from featstore.text.sources import iter_documents


class HubRows(list):
    """What `datasets.load_dataset(..., streaming=True)` returns, as far as the loader looks."""

    column_names = ["text"]


def test_txt_documents_are_separated_by_blank_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("first line\nstill first\n\n\n  \nsecond\n\nthird\n")
    docs = list(iter_documents(str(path)))
    assert [text for _, text in docs] == ["first line\nstill first", "second", "third"]
    assert [origin for origin, _ in docs] == [f"{path}#0", f"{path}#1", f"{path}#2"]
    assert len(list(iter_documents(str(path), max_docs=2))) == 2


def test_jsonl_uses_the_text_key_and_reports_bad_lines(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text(json.dumps({"body": "alpha"}) + "\n\n" + json.dumps({"body": "beta"}) + "\n")
    assert list(iter_documents(str(path), text_key="body")) == [(f"{path}:1", "alpha"), (f"{path}:3", "beta")]
    with pytest.raises(FeatstoreError, match="docs.jsonl:1 has no field 'text'"):
        list(iter_documents(str(path)))
    path.write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(FeatstoreError, match=r"docs.jsonl:2 is not valid JSON"):
        list(iter_documents(str(path)))


def test_parquet_reads_the_text_column(tmp_path):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "content": ["one", "", "three"]}), path)
    assert list(iter_documents(str(path), text_key="content")) == [(f"{path}#0", "one"), (f"{path}#2", "three")]
    with pytest.raises(FeatstoreError, match="no column 'text'.*id, content"):
        list(iter_documents(str(path)))


NON_TEXT = [(3, "a number"), (2.5, "a number"), (True, "a boolean"), (None, "null"), (["a"], "a list"), ({"a": "b"}, "an object")]


@pytest.mark.parametrize("value, kind", NON_TEXT)
def test_jsonl_parquet_and_hub_rows_refuse_a_text_that_is_not_a_string(tmp_path, monkeypatch, value, kind):
    """{"text": 3} is not the document "3": one line with the file, the record and the key."""
    import datasets

    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"text": value}) + "\n")
    parquet = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": pa.array([value, value])}), parquet)  # a column of one type: row 0 is wrong
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: HubRows([{"text": "fine"}, {"text": value}]))
    for source, where in ((jsonl, f"{jsonl}:2"), (parquet, f"{parquet} row 0"), ("owner/set", "dataset 'owner/set' [train] row 1")):
        with pytest.raises(FeatstoreError) as info:
            list(iter_documents(str(source)))
        assert str(info.value).startswith(f"{where}: 'text' holds {kind}, not text;"), (source, str(info.value))


def test_directory_gives_one_document_per_text_file_sorted_skipping_hidden_and_binary(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "two.lua").write_text("print(2)")
    (tmp_path / "a.lua").write_text("print(1)")
    (tmp_path / "empty.lua").write_text("  \n")
    (tmp_path / ".hidden.lua").write_text("secret")
    (tmp_path / "blob.bin").write_bytes(b"\x00\x01\x02")
    docs = list(iter_documents(str(tmp_path)))
    assert docs == [(str(tmp_path / "a.lua"), "print(1)"), (str(tmp_path / "b" / "two.lua"), "print(2)")]


def test_glob_pattern_matches_files_recursively(tmp_path):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "x.lua").write_text("x = 1")
    (tmp_path / "src" / "pkg" / "y.lua").write_text("y = 2")
    (tmp_path / "src" / "z.txt").write_text("not lua")
    texts = [t for _, t in iter_documents(str(tmp_path / "src" / "**" / "*.lua"))]
    assert texts == ["y = 2", "x = 1"]  # sorted by path: src/pkg/y.lua < src/x.lua
    with pytest.raises(FeatstoreError, match="no files match"):
        iter_documents(str(tmp_path / "*.nothing"))


def test_python_stdlib_is_the_running_interpreters_standard_library():
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docs = list(iter_documents("python-stdlib", max_docs=25))
    assert len(docs) == 25
    for origin, text in docs:
        path = Path(origin)
        assert path.suffix == ".py" and stdlib in path.parents and "site-packages" not in path.parts
        assert text == path.read_text(encoding="utf-8", errors="replace")


def test_generated_source_is_seeded_and_checks_its_options():
    first = list(iter_documents("generated:lua?docs=3&seed=1"))
    assert len(first) == 3 and all(text.strip() for _, text in first)
    assert first == list(iter_documents("generated:lua?docs=3&seed=1"))
    assert first != list(iter_documents("generated:lua?docs=3&seed=2"))
    with pytest.raises(FeatstoreError, match="unknown option"):
        list(iter_documents("generated:lua?doc=3"))


def test_hub_loader_reads_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "tiny_dataset"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps({"story": f"story {i}"}) + "\n" for i in range(4)))
    (folder / "data" / "validation.jsonl").write_text(json.dumps({"story": "held out"}) + "\n")
    docs = list(iter_documents(f"hf:{folder}", text_key="story"))
    assert [t for _, t in docs] == [f"story {i}" for i in range(4)]
    assert docs[0][0] == f"{folder}[train]#0"
    assert [t for _, t in iter_documents(f"hf:{folder}", hub_split="validation", text_key="story")] == ["held out"]
    with pytest.raises(FeatstoreError, match="no column 'text'"):
        list(iter_documents(f"hf:{folder}"))


def test_hub_id_goes_to_load_dataset_with_config_and_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return HubRows([{"text": "hub doc"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    assert list(iter_documents("roneneldan/TinyStories:default", hub_split="validation")) == [
        ("roneneldan/TinyStories:default[validation]#0", "hub doc")
    ]
    assert calls == [("roneneldan/TinyStories", "default", "validation", True)]


def test_unreachable_hub_id_and_missing_path_are_one_line_errors(tmp_path):
    with pytest.raises(FeatstoreError, match="cannot load dataset 'nobody-here/no-such-dataset'") as info:
        list(iter_documents("nobody-here/no-such-dataset"))
    assert "\n" not in str(info.value)
    with pytest.raises(FeatstoreError, match="not an existing file"):
        iter_documents(str(tmp_path / "missing.txt"))
    with pytest.raises(FeatstoreError, match="not an existing file"):
        iter_documents("data/missing.jsonl")  # looks like owner/name, but names a file
