"""The causal check: planted true matches told from look-alikes, inert features seen, the warehouse rows."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from helpers import build_lineage, error_line, run_cli
from planted import planted_effects

from featstore.activations.ingest import ingest
from featstore.correlation.correlate import correlate
from featstore.errors import FeatstoreError
from featstore.matching.causal import CausalSettings, causal_evidence, choose_pairs
from featstore.matching.effects import pair_effects
from featstore.saes import build_sae

HOOK = "blocks.0.mlp.hook_post"


def planted_sae(directions: np.ndarray):
    """The SAE whose features are exactly the planted directions (orthonormal, so W_enc = W_decᵀ)."""
    sae = build_sae("relu", d_in=directions.shape[1], d_sae=len(directions))
    with torch.no_grad():
        sae.W_dec.copy_(torch.as_tensor(directions, dtype=torch.float32))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.fill_(-0.05)  # float noise on silent features stays silent
        sae.b_dec.zero_()
    return sae


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a positive scores above a negative), ties counted half."""
    above = (positive[:, None] > negative[None, :]).mean()
    return float(above + 0.5 * (positive[:, None] == negative[None, :]).mean())


@pytest.fixture(scope="module")
def planted():
    lineage = planted_effects({"true": 16, "lookalike": 16, "inert": 8})
    sae = planted_sae(lineage.directions)
    n = len(lineage.truth)
    blocks = np.random.default_rng(3).integers(0, 256, size=(24, 48))
    effects = pair_effects((lineage.parent, lineage.child), (sae, sae), (HOOK, HOOK), blocks,
                           np.stack([np.arange(n), np.arange(n)], axis=1), pair_blocks=4, batch_rows=5,
                           device=torch.device("cpu"))
    return lineage, effects.to_pydict()


def test_planted_true_matches_are_told_from_look_alikes_with_roc_auc_of_0_9(planted):
    lineage, effects = planted
    truth = np.array(lineage.truth)
    score = np.array(effects["effect_cosine"], dtype=float)
    assert (np.array(effects["tokens"]) > 0).all()
    assert roc_auc(score[truth == "true"], score[truth == "lookalike"]) >= 0.9
    assert np.median(score[truth == "true"]) > 0.8 and np.median(score[truth == "lookalike"]) < 0.3
    # a look-alike fires on the same tokens in the same direction: only what it does differs
    assert effects["tokens_a"] == effects["tokens_b"]


def test_a_matched_feature_that_does_nothing_has_no_effect_size(planted):
    lineage, effects = planted
    truth = np.array(lineage.truth)
    kl = np.array(effects["kl_a"], dtype=float)
    assert kl[truth == "inert"].max() < 1e-5 and kl[truth != "inert"].min() > 0.1
    assert all(effects["loss_correlation"][i] is None for i in np.flatnonzero(truth == "inert"))
    assert all(effects["effect_cosine"][i] == 0 for i in np.flatnonzero(truth == "inert"))


def test_the_same_ablation_in_the_same_model_agrees_with_itself():
    lineage = planted_effects({"true": 4, "lookalike": 4}, seed=1)
    sae = planted_sae(lineage.directions)
    blocks = np.random.default_rng(0).integers(0, 256, size=(6, 32))
    pairs = np.array([[0, 0], [5, 5], [0, 5]])
    out = pair_effects((lineage.parent, lineage.parent), (sae, sae), (HOOK, HOOK), blocks, pairs,
                       device=torch.device("cpu")).to_pydict()
    assert out["effect_cosine"][0] == pytest.approx(1.0, abs=1e-4) and out["effect_cosine"][1] == pytest.approx(1.0, abs=1e-4)
    assert out["loss_correlation"][0] == pytest.approx(1.0, abs=1e-4)
    assert out["effect_cosine"][2] < 0.5  # two different features
    assert out["tokens"][2] >= max(out["tokens_a"][2], out["tokens_b"][2])


def test_pairs_are_the_top_matches_and_a_seeded_sample_of_the_rest():
    candidates = pa.table({"feature_a": pa.array(range(10), pa.uint32()), "feature_b": pa.array(range(10), pa.uint32()),
                           "score": pa.array([1 - i / 10 for i in range(10)], pa.float32())})
    picked = choose_pairs(candidates, CausalSettings(top=3, sample=4, seed=2))
    rows = picked.to_pylist()
    assert [r["feature_a"] for r in rows[:3]] == [0, 1, 2] and {r["selected"] for r in rows[:3]} == {"top"}
    sampled = [r["feature_a"] for r in rows[3:]]
    assert len(sampled) == 4 and min(sampled) >= 3 and {r["selected"] for r in rows[3:]} == {"sample"}
    assert choose_pairs(candidates, CausalSettings(top=3, sample=4, seed=2)) == picked
    assert choose_pairs(candidates, CausalSettings(top=20, sample=5)).num_rows == 10


@pytest.mark.parametrize("bad, message", [
    ({"top": 0, "sample": 0}, "both 0"), ({"top": -1}, "top must be at least 0"), ({"blocks": 0}, "blocks must be at least 1"),
    ({"block_len": 1}, "needs a next token"), ({"method": "causal"}, "not a match method to check"),
    ({"method": "nope"}, "not a match method to check"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(FeatstoreError, match=message):
        CausalSettings(**bad)


@pytest.fixture
def lineage(warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path):
    build_lineage(warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path)
    for model in ("m", "child"):
        ingest(warehouse, model, batch_size=4, device="cpu", progress=False)
    return warehouse


SMALL = CausalSettings(top=5, sample=4, blocks=8, block_len=16, pair_blocks=2)


def test_checked_pairs_are_stored_as_evidence_and_dropped_with_their_saes(lineage):
    wh = lineage
    with pytest.raises(FeatstoreError, match=r"no all_tokens matches on corpus 'c' to check; run `featstore correlate m-sae"):
        causal_evidence(wh, "m-sae", "child-sae", "c", settings=SMALL, device="cpu", progress=False)
    correlate(wh, "m-sae", "child-sae", r_floor=0.1, progress=False)
    done = causal_evidence(wh, "m-sae", "child-sae", "c", settings=SMALL, device="cpu", progress=False)
    assert done["pairs"] == 9 and 0 < done["tested"] <= 9
    checks = wh.query("SELECT * FROM causal_checks").to_pylist()
    assert len(checks) == 9 and {c["model_a"] for c in checks} == {"m"} and {c["selected"] for c in checks} == {"top", "sample"}
    best = wh.query("SELECT feature, match, score FROM match_best WHERE method = 'all_tokens' AND sae = 'm-sae'"
                    " ORDER BY score DESC, feature LIMIT 5").to_pylist()
    top = [(c["feature_a"], c["feature_b"]) for c in checks if c["selected"] == "top"]
    assert sorted(top) == sorted((b["feature"], b["match"]) for b in best)
    assert wh.scalar("SELECT count(*) FROM match_pairs p JOIN match_runs r ON r.id = p.run_id WHERE r.method = 'causal'") == done["tested"]
    agreement = wh.query("SELECT * FROM edge_agreement WHERE method_a = 'all_tokens' AND method_b = 'causal'").to_pylist()
    assert len(agreement) == 1 and agreement[0]["live_features"] == done["tested"]  # only the checked features count
    summary = wh.query("SELECT selected, pairs FROM causal_summary ORDER BY selected DESC").to_pylist()
    assert summary == [{"selected": "top", "pairs": 5}, {"selected": "sample", "pairs": 4}]
    causal_evidence(wh, "m-sae", "child-sae", "c", settings=SMALL, device="cpu", progress=False)
    assert wh.scalar("SELECT count(*) FROM causal_effects") == 9  # a rerun replaces the run
    wh.saes.drop("child-sae")
    assert wh.scalar("SELECT count(*) FROM causal_effects") == 0 and wh.scalar("SELECT count(*) FROM match_runs") == 0


def test_the_cli_checks_a_pair_and_refuses_bad_ones(lineage):
    wh = lineage
    correlate(wh, "m-sae", "child-sae", r_floor=0.1, progress=False)
    small = ["--corpus", "c", "--top", "3", "--sample", "2", "--blocks", "6", "--block-len", "16", "--device", "cpu"]
    done = run_cli(wh, "causal", "m-sae", "child-sae", *small)
    assert done.exit_code == 0, done.output
    assert "causal (c): 5 pairs of all_tokens matches checked" in done.output and "median_effect_cosine" in done.output
    same = run_cli(wh, "causal", "m-sae", "m-sae", *small)
    assert same.exit_code == 1 and "would be checked against itself" in error_line(same)
    unknown = run_cli(wh, "causal", "m-sae", "child-sae", *small, "--method", "decoder_cosine")
    assert unknown.exit_code == 1 and "no decoder_cosine matches" in error_line(unknown)
    assert "featstore match m-sae child-sae --method decoder_cosine" in error_line(unknown)
    assert wh.scalar("SELECT count(*) FROM causal_effects") == 5  # the refusals changed nothing
