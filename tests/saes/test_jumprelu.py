"""JumpReLU: thresholded encode, straight-through gradients, SAELens folders in and out, ingest, training."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import torch
from helpers import run_cli, tiny_texts
from safetensors.numpy import save_file
from safetensors.torch import load_file

from featstore.saes import build_sae, load_sae, save_sae
from featstore.saes.jumprelu import _JumpReLU, _Step
from featstore.saes.presets import sae_preset
from featstore.saes.training import Trainer, config_for, init_sae


def test_encode_zeroes_everything_at_or_below_the_threshold():
    torch.manual_seed(0)
    sae = build_sae("jumprelu", d_in=8, d_sae=32, jumprelu_init_threshold=0.3)
    with torch.no_grad():
        sae.log_threshold.copy_(torch.rand(32).mul(0.5).add(0.05).log())
    x = torch.randn(50, 8)
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    expected = pre * (pre > sae.threshold)
    torch.testing.assert_close(sae.encode(x), expected)
    assert ((pre > 0) & (pre <= sae.threshold)).any(), "some positive pre-activations must fall below their threshold"


def test_straight_through_gradients_use_the_rectangle_kernel():
    pre = torch.tensor([[0.10, 0.52, 0.90], [0.48, 0.30, 1.20]], requires_grad=True)
    threshold = torch.tensor([0.5, 0.5, 1.0], requires_grad=True)
    eps = 0.1
    _Step.apply(pre, threshold, eps).sum().backward()
    inside = ((pre - threshold).abs() < eps / 2).float()  # K((pre - θ)/ε) = 1 exactly for these entries
    torch.testing.assert_close(threshold.grad, -(1 / eps) * inside.sum(dim=0))
    assert pre.grad is None or pre.grad.abs().sum() == 0
    threshold.grad, pre.grad = None, None
    feats = _JumpReLU.apply(pre, threshold, eps)
    torch.testing.assert_close(feats, pre * (pre > threshold))
    feats.sum().backward()
    torch.testing.assert_close(threshold.grad, -(threshold / eps) * inside.sum(dim=0))
    torch.testing.assert_close(pre.grad, (pre > threshold).float())


def test_the_l0_coefficient_buys_sparsity():
    """On sparse synthetic data, a larger L0 coefficient gives fewer active features."""

    def l0_after_training(l0_coefficient):
        gen = torch.Generator().manual_seed(0)
        true = torch.nn.functional.normalize(torch.randn(32, 16, generator=gen), dim=1)

        def batches():
            while True:
                codes = torch.rand(256, 32, generator=gen) * (torch.rand(256, 32, generator=gen) < 0.1)
                yield codes @ true + 0.5

        settings = sae_preset("tiny", architecture="jumprelu", lr=1e-2, tokens=200 * 24, batch_blocks=1,
                              resample_every=10_000, l0_coefficient=l0_coefficient)
        stream = batches()
        sample = next(stream)
        sae = init_sae(config_for(settings, d_in=16), sample, seed=0)
        scale = float((sample - sae.b_dec.detach()).pow(2).sum(-1).mean())
        return Trainer(sae, settings, scale).fit(stream, progress=False)["train_l0"]

    free, penalised = l0_after_training(0.0), l0_after_training(0.05)
    assert penalised < 0.8 * free, (free, penalised)


def write_saelens_jumprelu(folder, d_in=64, d_sae=48, seed=0):
    """A JumpReLU folder laid out as SAELens (>= 6) saves one: tensors W_enc, W_dec, b_enc, b_dec, threshold
    and a cfg.json that keeps the hook and model under "metadata"."""
    rng = np.random.default_rng(seed)
    tensors = {
        "W_enc": (rng.standard_normal((d_in, d_sae)) * 0.2).astype(np.float32),
        "W_dec": rng.standard_normal((d_sae, d_in)).astype(np.float32),
        "b_enc": (rng.standard_normal(d_sae) * 0.01).astype(np.float32),
        "b_dec": np.zeros(d_in, np.float32),
        "threshold": rng.uniform(0.002, 0.01, d_sae).astype(np.float32),
    }
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "sae_weights.safetensors"))
    cfg = {"architecture": "jumprelu", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": False, "normalize_activations": "none", "reshape_activations": "none",
           "metadata": {"model_name": "m", "hook_name": "blocks.0.mlp.hook_post", "hook_layer": 0,
                        "hook_head_index": None, "prepend_bos": False, "sae_lens_version": "6.5.1"}}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return tensors


def test_saelens_folder_is_added_loaded_and_ingested(warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path):
    from featstore.models.capture import mlp_activations
    from featstore.models.catalog import register_model
    from featstore.models.hf import load_model
    from featstore.text.slices import add_corpus, corpus_token_blocks

    register_model(warehouse, "m", tiny_model_dir, kind="base")
    (tmp_path / "c.txt").write_text("\n\n".join(tiny_texts(10, seed=5)))
    add_corpus(warehouse, "c", str(tmp_path / "c.txt"), tiny_tokenizer_dir)
    tensors = write_saelens_jumprelu(tmp_path / "gemmascope-like")

    result = run_cli(warehouse, "sae", "add", "m-jr", str(tmp_path / "gemmascope-like"), "--model", "m")
    assert result.exit_code == 0, result.output
    assert "SAE m-jr of m: blocks.0.mlp.hook_post 64 -> 48 (jumprelu)" in result.output
    sae = load_sae(tmp_path / "gemmascope-like")
    torch.testing.assert_close(sae.threshold, torch.from_numpy(tensors["threshold"]))

    result = run_cli(warehouse, "ingest", "m", "--sae", "m-jr", "--device", "cpu")
    assert result.exit_code == 0, result.output
    path = warehouse.root / warehouse.scalar("SELECT path FROM activation_partitions WHERE sae = 'm-jr'")  # stored relative
    table = pq.read_table(path)
    got = sorted(zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))))

    model = load_model(tiny_model_dir, "cpu")
    W_enc, b_enc, threshold = (torch.from_numpy(tensors[k]) for k in ("W_enc", "b_enc", "threshold"))
    expected, below = [], 0
    for _doc, toks, ids in corpus_token_blocks(warehouse, "c"):
        pre = mlp_activations(model, torch.tensor(ids, dtype=torch.long)[None], 0)[0] @ W_enc + b_enc  # no b_dec centring
        feats = torch.relu(pre) * (pre > threshold)  # SAELens' JumpReLU
        below += int(((pre > 0) & (pre <= threshold)).sum())
        r, f = torch.nonzero(feats > 0, as_tuple=True)
        expected += zip(toks[r.numpy()].tolist(), f.tolist(), feats[r, f].tolist())
    expected.sort()
    assert len(got) == len(expected) > 0 and below > 0
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], rtol=1e-4, atol=1e-6)


def test_featstore_saves_the_threshold_in_saelens_naming(tmp_path):
    torch.manual_seed(1)
    sae = build_sae("jumprelu", d_in=8, d_sae=24, jumprelu_init_threshold=0.2, hook_layer=0, model_name="m")
    save_sae(sae, tmp_path)
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert set(tensors) == {"W_enc", "b_enc", "W_dec", "b_dec", "threshold"}
    torch.testing.assert_close(tensors["threshold"], torch.full((24,), 0.2))
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["jumprelu_bandwidth"] == 0.05 and cfg["l0_coefficient"] == 0.01
    x = torch.randn(5, 8)
    torch.testing.assert_close(load_sae(tmp_path).encode(x), sae.encode(x))


BUDGET = ["--expansion", "2", "--tokens", str(24 * 16 * 100), "--batch-blocks", "16", "--eval-tokens", str(24 * 16 * 4),
          "--resample-every", "50", "--lr", "3e-3", "--device", "cpu"]


def test_jumprelu_trains_to_the_relu_fvu_band_at_equal_l0(trainable_warehouse):
    """`sae train --architecture jumprelu` on the tiny model: at an L0 within 20% of the ReLU SAE's
    (same budget, seed and optimiser), its FVU is at most 1.5 times the ReLU SAE's."""
    for arch, extra in (("relu", []), ("jumprelu", ["--l0", "0.01"])):
        result = run_cli(trainable_warehouse, "sae", "train", "m", "--architecture", arch, "--id", f"m-{arch}", *BUDGET,
                         *extra)
        assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in trainable_warehouse.query("SELECT id, architecture, metrics FROM saes").to_pylist()}
    relu, jump = (json.loads(rows[f"m-{a}"]["metrics"]) for a in ("relu", "jumprelu"))
    print(f"\nReLU     FVU {relu['fvu']:.4f}  L0 {relu['l0']:.2f}  dead {relu['dead_fraction']:.3f}"
          f"\nJumpReLU FVU {jump['fvu']:.4f}  L0 {jump['l0']:.2f}  dead {jump['dead_fraction']:.3f}")
    assert rows["m-jumprelu"]["architecture"] == "jumprelu"
    assert abs(jump["l0"] - relu["l0"]) <= 0.2 * relu["l0"]
    assert jump["fvu"] <= 1.5 * relu["fvu"] and jump["fvu"] < 0.5
    reloaded = load_sae(trainable_warehouse.root / "saes" / "m-jumprelu")
    assert type(reloaded).__name__ == "JumpReLUSAE" and (reloaded.threshold > 0).all()
