"""featstore's CUDA paths against their CPU reference: the checklist of a GPU run.

Each test runs one path on the device under test, FEATSTORE_TEST_GPU_DEVICE (default `cuda`), and on the
CPU, on the same tiny inputs, and asserts they agree within a stated float tolerance (exactly where the
result is discrete and float differences cannot flip it). Without CUDA the module is skipped;
FEATSTORE_TEST_GPU_DEVICE=cpu rehearses it on the CPU (both sides on the CPU), which must pass too.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import copy_interp, same_results, stored
from safetensors.torch import load_file

from featstore.activations.ingest import ingest, ingest_corpora
from featstore.correlation.correlate import correlate
from featstore.correlation.engines import torch as torch_engine
from featstore.interpret.backends import make_backend
from featstore.interpret.scoring import score
from featstore.matching.cosine import cosine_candidates
from featstore.models.hf import resolve_device
from featstore.saes.presets import sae_preset
from featstore.saes.training import Trainer, config_for, init_sae, train_sae
from featstore.warehouse import Warehouse

DEVICE = os.environ.get("FEATSTORE_TEST_GPU_DEVICE", "cuda")
# two shards side by side on one device: `cuda:0,cuda:0` on a GPU, `cpu,cpu` in the CPU rehearsal
SHARDED = ",".join(2 * ["cuda:0" if DEVICE == "cuda" else DEVICE])

pytestmark = pytest.mark.skipif(
    DEVICE.startswith("cuda") and not torch.cuda.is_available(),
    reason="no CUDA device: these tests check featstore's CUDA paths on a GPU machine; "
           "FEATSTORE_TEST_GPU_DEVICE=cpu rehearses them on CPU",
)


# -- SAE training ------------------------------------------------------------------------------------

# tests/saes/test_sae_train.py's tiny run (12 steps), with no resampling: resampling draws from a generator
# on the training device, and CUDA's stream is not the CPU's, so resampled features would differ by design
TINY = {"tokens": 24 * 16 * 12, "batch_blocks": 16, "expansion": 2, "eval_tokens": 24 * 16, "resample_every": 10_000}


def test_sae_training_on_the_device_matches_the_cpu(trainable_warehouse):
    wh = trainable_warehouse
    settings = sae_preset("tiny", **TINY, training_step="dense")
    metrics = {name: train_sae(wh, "m", settings=settings, sae_id=name, device=device, progress=False)["metrics"]
               for name, device in (("reference", "cpu"), ("device", DEVICE))}
    cpu, dev = (load_file(str(wh.root / "saes" / name / "sae_weights.safetensors")) for name in ("reference", "device"))
    init = load_file(str(wh.root / "saes" / "reference" / "sae_init.safetensors"))
    for name, weight in cpu.items():
        # the two runs differ by under 1% of how far training moved the weights (float32 rounding, and the
        # odd token whose pre-activation is within rounding of 0 firing on one device only)
        assert (dev[name] - weight).norm() < 0.01 * (weight - init[name]).norm(), name
    # the CE losses themselves, not ce_loss_recovered: its denominator (zero-ablation minus clean loss) is
    # near 0 or below on the tiny random model, where the metric is unstable or NaN by definition
    for key in ("fvu", "l0", "mse", "ce_clean", "ce_reconstruction", "ce_zero_ablation"):
        assert math.isfinite(metrics["device"][key])
        assert metrics["device"][key] == pytest.approx(metrics["reference"][key], rel=1e-3), key


def test_auto_training_step_is_dense_on_cuda_and_sparse_on_cpu():
    settings = sae_preset("tiny", training_step="auto")
    sample = torch.randn(64, 16)
    sae = init_sae(config_for(settings, d_in=16), sample, seed=0).to(DEVICE)
    trainer = Trainer(sae, settings, scale=1.0)
    assert trainer.sparse == (torch.device(DEVICE).type == "cpu")


# -- ingest --------------------------------------------------------------------------------------------


def stored_activations(wh):
    table = pq.read_table(wh.partition_files("base-sae", "evalset"))
    return dict(zip(zip(table["tok"].to_pylist(), table["feature"].to_pylist()), table["act"].to_pylist(), strict=True))


def test_ingest_on_the_device_and_on_sharded_devices_matches_the_cpu(registered_warehouse):
    wh = registered_warehouse
    ingest(wh, "base", device="cpu", progress=False)
    reference = stored_activations(wh)
    runs = {DEVICE: ingest(wh, "base", device=DEVICE, progress=False)}
    results = {DEVICE: stored_activations(wh)}  # SHARDED is never DEVICE: it names two devices
    (runs[SHARDED],) = ingest_corpora(wh, "base", ["evalset"], device=SHARDED, progress=False)
    results[SHARDED] = stored_activations(wh)
    assert runs[SHARDED]["devices"] == SHARDED.split(",")
    assert len(wh.partition_files("base-sae", "evalset")) == 2  # one part per shard
    for spec, acts in results.items():
        assert runs[spec]["rows"] == len(acts) > 0
        # the same (tok, feature) pairs with act within 1e-4 (absent = 0): a pair whose act is within
        # rounding of 0 may be stored on one side only, every other pair must be on both
        for key in reference.keys() | acts.keys():
            assert acts.get(key, 0.0) == pytest.approx(reference.get(key, 0.0), rel=1e-4, abs=1e-4), (spec, key)


# -- correlation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("stat", ["all_tokens", "cofiring", "token_type_mean"])
def test_torch_correlation_engine_on_the_device_matches_the_sql_engine(interp_warehouse, stat, monkeypatch):
    # the torch engine has no device option (it takes CUDA whenever there is one): pin it to the device under test
    monkeypatch.setattr(torch_engine, "resolve_device", lambda device: resolve_device(DEVICE))
    floor = 1e-6 if stat == "all_tokens" else -1.0  # all_tokens refuses floors <= 0; elsewhere every pair is stored
    args = {"corpus": "synth", "stat": stat, "r_floor": floor, "progress": False}
    sql_run = correlate(interp_warehouse, "toy", "toy_child", engine="sql", **args)
    sql = stored(interp_warehouse, sql_run["id"])
    run = correlate(interp_warehouse, "toy", "toy_child", engine="torch", **args)
    assert run["n_cofiring_pairs"] == sql_run["n_cofiring_pairs"]  # a count of co-firing pairs: no rounding in it
    # pairs and best r within 1e-5 (pairs within 1e-5 of the floor may be stored by one engine only); a best
    # match may differ only where two partners tie exactly (same_results checks each such one), as rounding
    # on either engine may break an exact tie either way
    same_results(sql, stored(interp_warehouse, run["id"]), floor)


# -- match cosines -------------------------------------------------------------------------------------


def decision_margin(a, b, top_k, floor):
    """How far (in float64) the cosines are from what decides which pairs are kept: the floor, and the gap
    between each row's and each column's top_k-th and next best score."""
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    scores = a @ b.T
    margins = [np.abs(scores - floor).min()]
    for side in (scores, scores.T):
        ranked = -np.sort(-side, axis=1)
        margins.append((ranked[:, top_k - 1] - ranked[:, top_k]).min())
    return min(margins)


def test_match_cosines_on_the_device_match_the_cpu():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((120, 16)), rng.standard_normal((90, 16))
    b[:30] = a[:30] + 0.05 * rng.standard_normal((30, 16))  # near-copies above the floor
    # no score lies within 1e-4 of a decision (float32 rounding is ~1e-7), so the kept pairs must be identical
    assert decision_margin(a, b, 3, 0.6) > 1e-4
    a, b = torch.tensor(a), torch.tensor(b)
    (ia, ib, cpu_scores), (da, db, dev_scores) = (
        cosine_candidates(a, b, top_k=3, floor=0.6, device=device, block_elements=1000)  # several blocks
        for device in ("cpu", DEVICE)
    )
    assert set(zip(da.tolist(), db.tolist())) == set(zip(ia.tolist(), ib.tolist()))
    cpu_by_pair = dict(zip(zip(ia.tolist(), ib.tolist()), cpu_scores.tolist()))
    np.testing.assert_allclose(dev_scores, [cpu_by_pair[p] for p in zip(da.tolist(), db.tolist())], atol=1e-5)


# -- explain and score: the hf backend ---------------------------------------------------------------


def test_hf_backend_explains_and_scores_on_the_device_as_on_the_cpu(interp_template, tiny_model_dir, tmp_path):
    results = {}
    for name, device in (("reference", "cpu"), ("device", DEVICE)):
        # a warehouse each: the response cache and the stored scores are keyed by backend name, not device
        wh = copy_interp(Warehouse(tmp_path / name), interp_template)
        backend = make_backend("hf", model=str(tiny_model_dir), device=device)
        assert backend.model.device.type == torch.device(device).type
        summary = score(wh, "toy", features=[0, 3], backend=backend, progress=False)
        assert summary["scored"] == 2 and not summary["failed"]
        results[name] = (
            wh.query("SELECT feature, explanation FROM explanations WHERE explainer LIKE 'hf:%' ORDER BY feature").to_pylist(),
            wh.query("SELECT feature, score FROM scores ORDER BY feature").to_pylist(),
            wh.query("SELECT feature, tok, simulated FROM scores JOIN simulations ON score_id = id ORDER BY ALL").to_pylist(),
        )
    (texts, scores, simulated), (dev_texts, dev_scores, dev_simulated) = results["reference"], results["device"]
    # greedy explanations are discrete: the tiny model's top two logits are >= ~1e-3 apart at every step
    # (measured on the CPU), far above float32 device differences, so the texts are identical
    assert dev_texts == texts and len(texts) == 2
    # expected digits agree to 1e-4 (float32 logprobs, ~1e-5 expected); the tiny model's simulations span
    # only ~0.01 (std ~3e-3), so Pearson magnifies those differences some 300-fold: scores agree to 0.02
    assert [(s["feature"], s["tok"]) for s in dev_simulated] == [(s["feature"], s["tok"]) for s in simulated]
    for got, want in zip(dev_simulated, simulated, strict=True):
        assert got["simulated"] == pytest.approx(want["simulated"], abs=1e-4)
    for got, want in zip(dev_scores, scores, strict=True):
        assert got["feature"] == want["feature"] and got["score"] == pytest.approx(want["score"], abs=0.02)
