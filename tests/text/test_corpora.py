"""Corpus specs: weighted mixtures, the deterministic train/validation split, errors."""

from __future__ import annotations

import json

import pytest

from featstore.errors import FeatstoreError
from featstore.text.mixtures import (
    Component,
    iter_split_documents,
    iter_texts,
    parse_spec,
)


def test_parse_spec_weights_and_query_options():
    assert parse_spec("python-stdlib=0.5+generated:childes?docs=400=0.5") == [
        Component("python-stdlib", 0.5), Component("generated:childes?docs=400", 0.5)
    ]
    assert parse_spec("generated:lua?docs=200&seed=1") == [Component("generated:lua?docs=200&seed=1", 1.0)]
    assert parse_spec("a=3+b") == [Component("a", 0.75), Component("b", 0.25)]
    for bad in ("", "a=0.5+", "a=0+b=1"):
        with pytest.raises(FeatstoreError):
            parse_spec(bad)


def test_split_is_deterministic_disjoint_and_complete():
    spec = "generated:stories?docs=400"
    train = list(iter_texts(spec, part="train"))
    validation = list(iter_texts(spec, part="validation"))
    assert train == list(iter_texts(spec, part="train"))
    assert not set(train) & set(validation)
    assert sorted(train + validation) == sorted(iter_texts(spec, validation_fraction=0.0))
    assert 0.05 < len(validation) / 400 < 0.16
    # another seed gives another split and another order
    assert set(iter_texts(spec, part="validation", seed=1)) != set(validation)
    assert len(list(iter_texts(spec, max_docs=7))) == 7


def test_mixture_keeps_character_shares_and_records_origins():
    spec = "generated:lua?docs=300=0.25+generated:childes?docs=600=0.75"
    docs = list(iter_split_documents(spec, max_docs=300))
    chars = {"lua": 0, "childes": 0}
    for origin, text in docs:
        chars[origin.split(":")[1].split("?")[0]] += len(text)
    share = chars["lua"] / sum(chars.values())
    assert 0.22 < share < 0.28
    # the mixture ends when its scarcer source runs out instead of drifting from the weights
    everything = list(iter_split_documents("generated:lua?docs=20=0.5+generated:childes?docs=600=0.5"))
    lua_chars = sum(len(t) for o, t in everything if o.startswith("generated:lua"))
    childes_chars = sum(len(t) for o, t in everything if o.startswith("generated:childes"))
    assert sum(o.startswith("generated:lua") for o, _ in everything) <= 20
    assert abs(lua_chars - childes_chars) < 3000  # within a couple of documents, not 600 childes sessions


def test_local_folder_and_jsonl_sources(tmp_path):
    folder = tmp_path / "lua"
    folder.mkdir()
    for i in range(30):
        (folder / f"m{i}.lua").write_text(f"local x{i} = {i}\nreturn x{i}\n")
    rows = tmp_path / "stories.jsonl"
    rows.write_text("\n".join(json.dumps({"text": f"Tom had {i} cats."}) for i in range(30)))
    assert sorted(iter_texts(str(folder), validation_fraction=0.0)) == sorted(
        f"local x{i} = {i}\nreturn x{i}\n" for i in range(30)
    )
    origins = [o for o, _ in iter_split_documents(f"{folder}/*.lua=1+{folder}=1", validation_fraction=0.0)]
    assert all(o.endswith(".lua") for o in origins)
    mixed = list(iter_split_documents(f"{folder}=0.5+{rows}=0.5", validation_fraction=0.0))
    assert {o.split(":")[0] for o, _ in mixed if o.startswith(str(rows))} == {str(rows)}
    assert any(t.startswith("Tom had") for _, t in mixed) and any(t.startswith("local x") for _, t in mixed)


def test_bad_sources_and_empty_parts(tmp_path):
    with pytest.raises(FeatstoreError, match="is not an existing file"):
        list(iter_texts(str(tmp_path / "missing.txt")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatstoreError, match="no train documents"):
        list(iter_texts(str(tmp_path / "empty")))
    with pytest.raises(FeatstoreError, match="no validation documents"):
        list(iter_texts("generated:lua?docs=1", part="validation"))
    with pytest.raises(FeatstoreError, match="unknown corpus part"):
        list(iter_texts("generated:lua", part="test"))
