"""Crosscoders: the planted lineage's classes recovered, Latent Scaling, the folder format, the warehouse."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from helpers import build_lineage, error_line, run_cli
from planted import CLASSES, planted_lineage

from featstore.activations.ingest import ingest
from featstore.browser.app import create_app
from featstore.correlation.correlate import correlate
from featstore.crosscoders import (
    Crosscoder,
    CrosscoderConfig,
    CrosscoderSettings,
    catalog,
    load_crosscoder,
    save_crosscoder,
)
from featstore.crosscoders.latents import describe_latents, quality
from featstore.crosscoders.training import paired_activations, train_crosscoder
from featstore.errors import FeatstoreError
from featstore.matching import build_evidence
from featstore.matching.crosscoder import crosscoder_pairs

HOOK = "blocks.0.mlp.hook_post"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def planted():
    """The planted lineage (16 shared, 8 parent-only, 8 child-only features) and a BatchTopK crosscoder of it."""
    lineage = planted_lineage({"shared": 16, "parent_only": 8, "child_only": 8})
    rng = np.random.default_rng(1)
    settings = CrosscoderSettings(expansion=2, k=2, tokens=150_000, batch_tokens=512, lr=3e-3, block_len=64)
    models = (lineage.parent, lineage.child)
    xc = train_crosscoder(models, rng.integers(0, 512, size=(2000, 64)), hook=HOOK, names=("p", "c"), settings=settings,
                          device=CPU, progress=False)
    sample = paired_activations(models, [torch.as_tensor(b) for b in rng.integers(0, 512, size=(100, 64))], HOOK, CPU)
    return lineage, xc, sample


def planted_classes(lineage, xc, classes: list[str]) -> list[str]:
    """The class of the latent whose (parent, child) decoder best matches each planted feature."""
    decoders = torch.nn.functional.normalize(xc.W_dec.detach().reshape(xc.cfg.d_sae, -1), dim=1)
    truth = []
    for direction, cls in zip(lineage.directions, lineage.truth):
        u = torch.as_tensor(direction, dtype=torch.float32)
        truth.append(torch.cat([u * (cls != "child_only"), u * (cls != "parent_only")]))
    best = (torch.nn.functional.normalize(torch.stack(truth), dim=1) @ decoders.T).argmax(dim=1)
    return [classes[int(i)] for i in best]


def test_the_planted_classes_are_recovered_with_precision_and_recall_of_0_9(planted):
    lineage, xc, sample = planted
    latents = describe_latents(xc, sample)
    predicted = planted_classes(lineage, xc, latents.column("class").to_pylist())
    pairs = Counter(zip(lineage.truth, predicted))
    for cls in CLASSES:
        hits = pairs[cls, cls]
        precision = hits / max(1, sum(n for (_, p), n in pairs.items() if p == cls))
        recall = hits / lineage.truth.count(cls)
        assert precision >= 0.9 and recall >= 0.9, (cls, pairs)
    measured = quality(xc, sample)
    assert measured["fvu_parent"] < 0.05 and measured["fvu_child"] < 0.05
    exclusive = [i for i, c in enumerate(latents.column("class").to_pylist()) if c in ("parent_only", "child_only")]
    nu = np.abs(latents.column("nu_error").to_numpy(zero_copy_only=False)[exclusive])
    assert len(exclusive) >= 16 and np.median(nu) < 0.1  # the other model holds nothing of a planted exclusive feature


def test_latent_scaling_flags_an_exclusive_latent_the_other_model_still_holds():
    """Latent 0 writes e0 to the child only, but the parent's activations hold it too (complete shrinkage);
    latent 1 writes e1 to the child only and the parent has nothing of it: only latent 0 is an artefact."""
    cfg = CrosscoderConfig(d_in=4, d_sae=2, models=("p", "c"), hook_name=HOOK, sparsity="l1", l1_coefficient=0.1)
    xc = Crosscoder(cfg)
    with torch.no_grad():
        for t in xc.tensors().values():
            t.zero_()
        xc.W_dec[0, 1, 0] = xc.W_dec[1, 1, 1] = 1.0
        xc.W_dec[0, 0, 2] = xc.W_dec[1, 0, 3] = 1e-6  # a trace in the parent, so the norms are defined
        xc.W_enc[1, 0, 0] = xc.W_enc[1, 1, 1] = 1.0
    f = torch.rand(500, 2) + 0.5
    x = torch.zeros(500, 2, 4)
    x[:, 1, 0], x[:, 1, 1] = f[:, 0], f[:, 1]
    x[:, 0, 0] = f[:, 0]  # the parent holds latent 0's direction, unreconstructed
    rows = describe_latents(xc, x).to_pylist()
    assert [r["class"] for r in rows] == ["child_only", "child_only"]
    assert rows[0]["nu_error"] == pytest.approx(1.0, abs=1e-4) and rows[0]["artefact"] is True
    assert abs(rows[1]["nu_error"]) < 1e-4 and abs(rows[1]["nu_recon"]) < 1e-4 and rows[1]["artefact"] is False


def test_crosscoder_evidence_pairs_the_shared_features_and_only_those(planted):
    """SAEs whose dictionaries are the planted directions: the crosscoder method pairs each shared feature
    with itself in the other SAE, and leaves every exclusive feature unpaired."""
    lineage, xc, sample = planted
    classes = np.array(describe_latents(xc, sample).column("class").to_pylist())
    directions = torch.as_tensor(lineage.directions, dtype=torch.float32)
    in_parent = [i for i, c in enumerate(lineage.truth) if c != "child_only"]
    in_child = [i for i, c in enumerate(lineage.truth) if c != "parent_only"]
    ia, ib, score = crosscoder_pairs(directions[in_parent], directions[in_child], xc.W_dec.detach()[:, 0],
                                     xc.W_dec.detach()[:, 1], classes == "shared")
    paired = {(in_parent[a], in_child[b]) for a, b in zip(ia, ib)}
    shared = {i for i, c in enumerate(lineage.truth) if c == "shared"}
    assert paired == {(i, i) for i in shared} and float(score.min()) > 0.9


def test_a_diverging_run_is_refused_and_nothing_is_returned(planted):
    lineage, _, _ = planted
    settings = CrosscoderSettings(expansion=1, k=2, tokens=2048, batch_tokens=512, lr=1e30, block_len=64)
    blocks = np.random.default_rng(2).integers(0, 512, size=(40, 64))
    with pytest.raises(FeatstoreError, match="diverged .NaN weights. at lr 1e.30; nothing was saved"):
        train_crosscoder((lineage.parent, lineage.child), blocks, hook=HOOK, names=("p", "c"), settings=settings,
                         device=CPU, progress=False)


def test_the_folder_loads_back_exactly_and_bad_folders_are_refused(planted, tmp_path):
    _, xc, sample = planted
    folder = save_crosscoder(xc, tmp_path / "xc")
    again = load_crosscoder(folder)
    for name, tensor in xc.tensors().items():
        assert torch.equal(tensor, again.tensors()[name]), name
    assert again.cfg == xc.cfg and torch.equal(again.encode(sample), xc.encode(sample))
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps({**cfg, "normalise": True}))
    with pytest.raises(FeatstoreError, match="unknown key 'normalise'"):
        load_crosscoder(folder)
    (folder / "cfg.json").write_text(json.dumps({**cfg, "d_sae": cfg["d_sae"] + 1}))
    with pytest.raises(FeatstoreError, match=r"W_dec has shape \(128, 2, 64\), expected \(129, 2, 64\)"):
        load_crosscoder(folder)
    for key, value, message in (("d_in", "64", "d_in must be a positive integer"), ("k", 2.5, "k must be an integer"),
                                ("models", ["p"], r"models must be \[parent, child\]"),
                                ("activation_scale", [1.0, float("nan")], "activation_scale must be two positive numbers"),
                                ("hook_name", 3, "hook_name must be a string")):
        (folder / "cfg.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(FeatstoreError, match=message):
            load_crosscoder(folder)
    (folder / "cfg.json").write_text(json.dumps({**cfg, "format": "sae_lens"}))
    with pytest.raises(FeatstoreError, match="not a featstore.crosscoder version 1 config"):
        load_crosscoder(folder)
    with pytest.raises(FeatstoreError, match="is not a crosscoder folder"):
        load_crosscoder(tmp_path)


SMALL = CrosscoderSettings(expansion=1, k=8, tokens=1024, batch_tokens=128, block_len=16, eval_tokens=256)


@pytest.fixture
def lineage(warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path):
    build_lineage(warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    return warehouse


def test_a_crosscoder_is_registered_ingested_matched_and_dropped(lineage):
    wh = lineage
    row = catalog.train(wh, "m", "child", settings=SMALL, corpus="c", device="cpu", progress=False)
    assert (row["sae"], row["parent_model"], row["child_model"], row["d_sae"]) == ("m-child-crosscoder-batchtopk", "m", "child", 64)
    sae_row = wh.query("SELECT architecture, model, is_primary FROM saes WHERE id = ?", [row["sae"]]).to_pylist()
    assert sae_row == [{"architecture": "crosscoder", "model": "child", "is_primary": False}]
    assert wh.scalar("SELECT count(*) FROM crosscoder_latents WHERE sae = ?", [row["sae"]]) == 64
    assert set(row["metrics"]) >= {"fvu_parent", "fvu_child", "l0", "latents_shared", "exclusive_artefacts"}
    done = catalog.ingest(wh, row["sae"], "c", device="cpu", progress=False)
    stored = wh.scalar("SELECT count(*) FROM activations WHERE sae = ? AND corpus = 'c'", [row["sae"]])
    assert done["rows"] == stored > 0 and done["tokens"] == wh.scalar("SELECT n_tokens FROM corpora WHERE name = 'c'")

    for model in ("m", "child"):
        ingest(wh, model, batch_size=4, device="cpu", progress=False)
    correlate(wh, "m-sae", "child-sae", r_floor=0.1, progress=False)
    client = create_app(wh).test_client()
    page = client.get(f"/sae/{row['sae']}/feature/0")
    latent = wh.query("SELECT class FROM crosscoder_latents WHERE sae = ? AND latent = 0", [row["sae"]]).column(0)[0].as_py()
    assert page.status_code == 200 and f"<strong>{latent.replace('_', '-')}</strong>" in page.get_data(as_text=True)
    summary = build_evidence(wh, "m-sae", "child-sae", device="cpu")
    pair = wh.query("SELECT p.feature_a, p.feature_b FROM match_pairs p JOIN match_runs r ON r.id = p.run_id"
                    " WHERE r.method = 'crosscoder' AND r.sae_a = 'm-sae' LIMIT 1").to_pylist()[0]
    page = create_app(wh).test_client().get(f"/sae/m-sae/feature/{pair['feature_a']}").get_data(as_text=True)
    assert "<td>crosscoder</td><td>child-sae</td>" in page and f'"sae/child-sae/feature/{pair["feature_b"]}"' in page
    assert summary["crosscoder"]["weights"]["pairs"] > 0
    agreement = wh.query("SELECT * FROM edge_agreement WHERE method_b = 'crosscoder' AND method_a = 'all_tokens'").to_pylist()
    assert len(agreement) == 1 and agreement[0]["live_features"] > 0 and agreement[0]["persisting_b"] is not None
    runs = "SELECT count(*) FROM match_runs WHERE method = 'crosscoder'"
    assert wh.scalar(runs) == 1
    catalog.train(wh, "m", "child", settings=SMALL, corpus="c", device="cpu", progress=False, replace=True)
    assert wh.scalar(runs) == 0  # a new crosscoder of the two models makes the old evidence stale
    build_evidence(wh, "m-sae", "child-sae", methods=["crosscoder"], device="cpu")
    wh.saes.drop(row["sae"])
    assert wh.scalar(runs) == 0 and wh.scalar("SELECT count(*) FROM crosscoder_latents") == 0
    assert wh.scalar("SELECT count(*) FROM crosscoders") == 0
    with pytest.raises(FeatstoreError, match="have no crosscoder at the SAEs. hook; train one"):
        build_evidence(wh, "m-sae", "child-sae", methods=["crosscoder"], device="cpu")
    assert "crosscoder" not in build_evidence(wh, "m-sae", "child-sae", device="cpu")


def test_the_cli_trains_and_ingests_and_refuses_bad_pairs(lineage):
    wh = lineage
    small = ["--expansion", "1", "--k", "8", "--tokens", "1024", "--batch-tokens", "128", "--block-len", "16",
             "--eval-tokens", "256", "--corpus", "c", "--device", "cpu"]
    done = run_cli(wh, "crosscoder", "train", "m", "child", *small, "--sparsity", "l1", "--ingest", "c")
    assert done.exit_code == 0, done.output
    assert "crosscoder m-child-crosscoder-l1 (64 -> 64, l1) of m x child" in done.output
    assert "m-child-crosscoder-l1 on c:" in done.output
    again = run_cli(wh, "crosscoder", "train", "m", "child", *small, "--sparsity", "l1")
    assert again.exit_code == 1 and "already exists; pick another --id or pass --replace" in error_line(again)
    taken = run_cli(wh, "crosscoder", "train", "m", "child", *small, "--id", "m-sae", "--replace")
    assert taken.exit_code == 1 and "SAE 'm-sae' exists and is not a crosscoder" in error_line(taken)
    assert wh.saes.get("m-sae")["architecture"] == "relu"
    same = run_cli(wh, "crosscoder", "train", "m", "m", *small)
    assert same.exit_code == 1 and "reads two different models" in error_line(same)
    missing = run_cli(wh, "crosscoder", "ingest", "nope", "--corpus", "c")
    assert missing.exit_code == 1 and "unknown crosscoder 'nope'" in error_line(missing)
