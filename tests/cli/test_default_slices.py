"""`ingest MODEL`, `correlate A B` and `match A B` without --corpus: they compute the slices whose result is
missing or older than the activations it was computed from, name the skipped ones, and say so when every one
is stored (exit 0); --all-corpora computes them all again, an explicit --corpus as before.

The warehouse is built once per module (models m and m2 = fine-tune of m, SAEs s1 of m and s2 of m2,
corpora c1..c3, both SAEs ingested on all three); each test works on its own copy.
"""

from __future__ import annotations

import re
import shutil

import pytest
from helpers import run_cli, tiny_texts, write_sae_folder

from featstore.warehouse import Warehouse
from featstore.warehouse.tables import remove_files

SLICES = ("c1", "c2", "c3")


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, tiny_tokenizer_dir) -> Warehouse:
    from featstore.activations.ingest import ingest_corpora
    from featstore.models.catalog import register_model
    from featstore.saes.catalog import add_sae_folder
    from featstore.text.slices import add_corpus

    root = tmp_path_factory.mktemp("default_slices")
    wh = Warehouse(root / "wh")
    for seed, name in enumerate(SLICES, 1):
        (root / f"{name}.txt").write_text("\n\n".join(tiny_texts(4, seed=seed)))
        add_corpus(wh, name, str(root / f"{name}.txt"), tiny_tokenizer_dir)
    for name, kind, parents in (("m", "base", ()), ("m2", "finetune", ("m",))):
        register_model(wh, name, tiny_model_dir, kind=kind, parents=parents)
    for sae, model in (("s1", "m"), ("s2", "m2")):
        add_sae_folder(wh, sae, model, write_sae_folder(root / "saes" / sae))
        ingest_corpora(wh, model, SLICES, sae_id=sae, device="cpu", progress=False)
    return wh


@pytest.fixture
def wh(built, tmp_path) -> Warehouse:
    shutil.copytree(built.root, tmp_path / "wh")
    copy = Warehouse(tmp_path / "wh")
    copy.relocate()
    return copy


def ok(wh: Warehouse, *args: str) -> str:
    """`featstore ARGS` on `wh`, which must succeed; its standard output."""
    result = run_cli(wh, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def paths(wh: Warehouse) -> dict[tuple[str, str], str]:
    return {(r["sae"], r["corpus"]): r["path"] for r in wh.query("SELECT sae, corpus, path FROM activation_partitions").to_pylist()}


def drop_partition(wh: Warehouse, sae: str, corpus: str) -> None:
    with wh.transaction() as con:
        files = wh.partitions.drop(con, sae=sae, corpus=corpus)
    remove_files(files)


def test_ingest_computes_exactly_the_slices_without_a_partition(wh):
    before = paths(wh)
    assert ok(wh, "ingest", "m") == "s1 has activations on every slice (c1, c2, c3); --all-corpora ingests them again\n"
    assert paths(wh) == before
    drop_partition(wh, "s1", "c2")
    out = ok(wh, "ingest", "m", "--device", "cpu")
    assert re.findall(r"^(\w+ on \w+):", out, re.M) == ["s1 on c2"]
    assert out.endswith("skipped c1, c3, where s1 has activations (--all-corpora ingests them again)\n")
    changed = {key for key, path in paths(wh).items() if path != before[key]}
    assert changed == {("s1", "c2")} and paths(wh).keys() == before.keys()
    assert re.findall(r"^(\w+ on \w+):", ok(wh, "ingest", "m2", "--all-corpora", "--device", "cpu"), re.M) == [
        "s2 on c1", "s2 on c2", "s2 on c3"]
    assert re.findall(r"^(\w+ on \w+):", ok(wh, "ingest", "m", "--corpus", "c3", "--device", "cpu"), re.M) == ["s1 on c3"]


def test_ingest_of_a_named_sae_looks_at_its_own_partitions(wh, tmp_path):
    from featstore.activations.ingest import corpora_to_ingest

    ok(wh, "sae", "add", "s1b", str(write_sae_folder(tmp_path / "s1b")), "--model", "m", "--not-primary")
    assert corpora_to_ingest(wh, "m", sae_id="s1b") == (list(SLICES), None)
    assert corpora_to_ingest(wh, "m", ["c2"], sae_id="s1") == (["c2"], None)  # a named corpus is computed as named


def test_correlate_skips_the_stored_runs_of_its_statistic_and_floor(wh):
    assert re.findall(r"s1 x s2 on (\w+)", ok(wh, "correlate", "s1", "s2")) == list(SLICES)
    assert ok(wh, "correlate", "s1", "s2") == (
        "s1 x s2 has its all_tokens run at floor 0.2 on every slice (c1, c2, c3); --all-corpora computes them again\n")
    assert re.findall(r"s1 x s2 on (\w+)", ok(wh, "correlate", "s1", "s2", "--stat", "cofiring")) == list(SLICES)
    ok(wh, "ingest", "m2", "--corpus", "c2", "--device", "cpu")  # newer activations: the c2 runs are out of date
    out = ok(wh, "correlate", "s1", "s2")
    assert re.findall(r"s1 x s2 on (\w+)", out) == ["c2"]
    assert out.endswith("skipped c1, c3, where s1 x s2 has its all_tokens run at floor 0.2 (--all-corpora computes them again)\n")
    assert re.findall(r"s1 x s2 on (\w+)", ok(wh, "correlate", "s1", "s2", "--floor", "0.3")) == list(SLICES)
    assert re.findall(r"s1 x s2 on (\w+)", ok(wh, "correlate", "s1", "s2", "--floor", "0.3", "--all-corpora")) == list(SLICES)
    assert re.findall(r"s1 x s2 on (\w+)", ok(wh, "correlate", "s1", "s2", "--floor", "0.3", "--corpus", "c1")) == ["c1"]


def test_match_skips_the_slices_where_every_method_asked_has_a_run(wh):
    first = ok(wh, "match", "s1", "s2", "--device", "cpu")
    assert {"decoder_cosine (weights)", "encoder_cosine (weights)", "jaccard (c1)", "jaccard (c2)", "jaccard (c3)"} <= set(
        re.findall(r"^(\w+ \(\w+\)):", first, re.M))
    assert ok(wh, "match", "s1", "s2") == ("s1 x s2 has its runs of decoder_cosine, encoder_cosine, jaccard on every slice "
                                           "(weights, c1, c2, c3); --all-corpora computes them again\n")
    ok(wh, "ingest", "m", "--corpus", "c3", "--device", "cpu")
    out = ok(wh, "match", "s1", "s2", "--device", "cpu")
    assert re.findall(r"^(\w+ \(\w+\)):", out, re.M) == ["jaccard (c3)"]
    assert out.endswith("skipped weights, c1, c2, where s1 x s2 has its runs of decoder_cosine, encoder_cosine, jaccard "
                        "(--all-corpora computes them again)\n")
    out = ok(wh, "match", "s1", "s2", "--method", "decoder_cosine", "--top-k", "3", "--device", "cpu")  # another top-k
    assert "decoder_cosine (weights): pairs" in out and "jaccard" not in out and "encoder_cosine (weights): pairs" not in out
    assert ok(wh, "match", "s1", "s2", "--method", "jaccard").startswith("s1 x s2 has its runs of jaccard on every slice")
