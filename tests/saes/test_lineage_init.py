"""Lineage-initialised SAEs: the child's SAE starts from the parent's trained weights, records each
feature's drift, stays an ordinary SAELens folder, and its views set drift beside the independent match."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_texts
from safetensors.torch import load_file

from featstore.activations.ingest import ingest
from featstore.correlation.correlate import correlate
from featstore.errors import FeatstoreError
from featstore.models.catalog import register_model
from featstore.saes import load_sae
from featstore.saes.presets import sae_preset
from featstore.saes.training import INIT_FILE, train_sae
from featstore.text.slices import add_corpus

TINY = {"tokens": 24 * 16 * 12, "batch_blocks": 16, "expansion": 2, "eval_tokens": 24 * 16, "resample_every": 5}


@pytest.fixture(scope="module")
def lineage(tmp_path_factory, tiny_model_dir):
    """Model m with its SAE, its fine-tune `child` (same weights) with an independent SAE and a
    lineage-initialised one, all ingested on corpus c, m x child correlated there."""
    from featstore.warehouse import Warehouse

    folder = tmp_path_factory.mktemp("lineage")
    wh = Warehouse(folder / "wh")
    source = folder / "texts.txt"
    source.write_text("\n\n".join(tiny_texts(200, seed=3)))
    register_model(wh, "m", tiny_model_dir, kind="base", train_corpus=str(source))
    register_model(wh, "child", tiny_model_dir, kind="finetune", parents=("m",), train_corpus=str(source))
    options = {"device": "cpu", "progress": False}
    train_sae(wh, "m", settings=sae_preset("tiny", **TINY), sae_id="m-sae", **options)
    grown = train_sae(wh, "child", settings=sae_preset("tiny", **{**TINY, "tokens": 24 * 16 * 4, "seed": 5}), sae_id="child-lineage",
                      init_from="m-sae", **options)
    train_sae(wh, "child", settings=sae_preset("tiny", **TINY, seed=1), sae_id="child-sae", **options)
    eval_text = folder / "eval.txt"
    eval_text.write_text("\n\n".join(tiny_texts(30, seed=9)))
    add_corpus(wh, "c", str(eval_text), tiny_model_dir)
    for model, sae in (("m", "m-sae"), ("child", "child-sae"), ("child", "child-lineage")):
        ingest(wh, model, corpus="c", sae_id=sae, **options)
    correlate(wh, "m-sae", "child-sae", corpus="c", progress=False)
    return wh, grown


def test_the_child_sae_starts_as_the_parents_and_records_its_drift(lineage):
    wh, grown = lineage
    assert grown["init_from"] == "m-sae" and not grown["is_primary"]  # the child's first SAE, yet not its primary one
    assert wh.saes.primary("child")["id"] == "child-sae"
    parent = load_file(str(wh.root / "saes" / "m-sae" / "sae_weights.safetensors"))
    start = load_file(str(wh.root / "saes" / "child-lineage" / INIT_FILE))
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        torch.testing.assert_close(start[name], parent[name], rtol=0, atol=0)
    trained = load_sae(wh.root / "saes" / "child-lineage")
    expected = torch.nn.functional.cosine_similarity(trained.W_dec.detach(), parent["W_dec"], dim=1)
    stored = wh.query("SELECT decoder_cosine FROM sae_drift WHERE sae = 'child-lineage' ORDER BY feature").column(0).to_pylist()
    assert len(stored) == 128 and stored == pytest.approx(expected.tolist(), abs=1e-6)
    assert 0.5 < sorted(stored)[64] < 1.0  # trained a quarter as long: moved, not replaced


def test_a_lineage_initialised_sae_is_an_ordinary_saelens_folder(lineage):
    sae_lens = pytest.importorskip("sae_lens", reason="the SAELens oracle (pip install sae-lens) is not installed")
    wh, _ = lineage
    folder = wh.root / "saes" / "child-lineage"
    theirs, ours = sae_lens.SAE.load_from_disk(str(folder)), load_sae(folder)
    x = torch.randn(32, 64) * 3
    torch.testing.assert_close(theirs.encode(x).float(), ours.encode(x).float(), atol=1e-5, rtol=1e-5)


def test_drift_sits_beside_the_independent_match(lineage):
    wh, _ = lineage
    rows = wh.query("SELECT * FROM lineage_drift WHERE sae = 'child-lineage' AND corpus = 'c'").to_pylist()
    assert len(rows) == 128 and {r["init_model"] for r in rows} == {"m"}
    assert any(r["independent_r"] is not None for r in rows) and all(r["init_density"] >= 0 for r in rows)
    assert all(r["persists"] == (r["decoder_cosine"] >= 0.9 and r["density"] > 0) for r in rows)
    [summary] = wh.query("SELECT * FROM drift_summary WHERE sae = 'child-lineage'").to_pylist()
    live = sum(r["init_density"] > 0 for r in rows)
    assert summary["live_features"] == live and summary["persisting_by_drift"] == sum(r["persists"] for r in rows if r["init_density"] > 0)
    assert summary["persisting_both"] <= min(summary["persisting_by_drift"], summary["persisting_independent"])


def test_bad_starts_are_refused(lineage):
    wh, _ = lineage
    options = {"device": "cpu", "progress": False}
    with pytest.raises(FeatstoreError, match="is a relu SAE; train with --arch relu"):
        train_sae(wh, "child", settings=sae_preset("tiny", **TINY, architecture="topk", k=4), init_from="m-sae", **options)
    with pytest.raises(FeatstoreError, match=r"W_enc of .* is \(64, 128\), this SAE needs \(64, 256\)"):
        train_sae(wh, "child", settings=sae_preset("tiny", **{**TINY, "expansion": 4}), init_from="m-sae", **options)
    with pytest.raises(FeatstoreError, match="give one"):
        train_sae(wh, "child", settings=sae_preset("tiny", **TINY), init_from="m-sae", same_init_as="m-sae", **options)
    with pytest.raises(FeatstoreError, match="unknown SAE 'nope'"):
        train_sae(wh, "child", settings=sae_preset("tiny", **TINY), init_from="nope", **options)
    assert wh.scalar("SELECT count(*) FROM saes") == 3


def test_dropping_it_drops_its_drift(lineage):
    wh, _ = lineage
    wh.saes.drop("child-lineage")
    assert wh.scalar("SELECT count(*) FROM sae_drift") == 0
