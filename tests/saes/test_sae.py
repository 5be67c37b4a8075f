"""SAE modules and the SAELens-named format: round trip, TopK sparsity, corrupt files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from featstore.errors import FeatstoreError
from featstore.saes import build_sae, load_sae, save_sae
from featstore.saes.topk import TopKConfig


def test_topk_keeps_exactly_k_per_token():
    torch.manual_seed(0)
    sae = build_sae("topk", d_in=16, d_sae=64, k=5)
    with torch.no_grad():
        sae.b_enc.fill_(1.0)  # every pre-activation positive, so exactly k survive
    feats = sae.encode(torch.randn(100, 16))
    assert ((feats > 0).sum(dim=-1) == 5).all()


def test_relu_encode_decode_formula():
    torch.manual_seed(0)
    sae = build_sae("relu", d_in=8, d_sae=32)
    x = torch.randn(4, 8)
    feats = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    torch.testing.assert_close(sae.encode(x), feats)
    torch.testing.assert_close(sae(x)[0], feats @ sae.W_dec + sae.b_dec)
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(32))


def test_parallel_gradient_is_removed():
    torch.manual_seed(0)
    sae = build_sae("relu", d_in=8, d_sae=32)
    sae(torch.randn(10, 8))[0].pow(2).sum().backward()
    sae.remove_parallel_grad()
    assert (sae.W_dec.grad * sae.W_dec).sum(dim=1).abs().max() < 1e-5


@pytest.mark.parametrize("arch,k", [("relu", None), ("topk", 3)])
def test_save_load_round_trip_in_saelens_naming(tmp_path, arch, k):
    torch.manual_seed(1)
    sae = build_sae(arch, d_in=8, d_sae=24, **({"k": k} if k else {}), hook_layer=0, model_name="m")
    save_sae(sae, tmp_path)
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert {n: tuple(t.shape) for n, t in tensors.items()} == {
        "W_enc": (8, 24), "b_enc": (24,), "W_dec": (24, 8), "b_dec": (8,)
    }
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["architecture"] == {"relu": "standard", "topk": "topk"}[arch]
    assert cfg["hook_name"] == "blocks.0.mlp.hook_post" and cfg["d_sae"] == 24
    loaded = load_sae(tmp_path)
    x = torch.randn(5, 8)
    torch.testing.assert_close(loaded.encode(x), sae.encode(x))


def test_imports_a_saelens_folder_without_b_dec_centering(tmp_path):
    torch.manual_seed(2)
    weights = {"W_enc": torch.randn(6, 12), "b_enc": torch.randn(12), "W_dec": torch.randn(12, 6), "b_dec": torch.randn(6)}
    save_file(weights, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps(
        {"d_in": 6, "d_sae": 12, "architecture": "standard", "hook_name": "blocks.0.mlp.hook_post", "apply_b_dec_to_input": False}
    ))
    sae = load_sae(tmp_path)
    x = torch.randn(3, 6)
    torch.testing.assert_close(sae.encode(x), torch.relu(x @ weights["W_enc"] + weights["b_enc"]))


def test_bad_files_are_one_line_errors(tmp_path):
    sae = build_sae("relu", d_in=8, d_sae=16)
    save_sae(sae, tmp_path)
    (tmp_path / "sae_weights.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(FeatstoreError, match="corrupt SAE weights"):
        load_sae(tmp_path)
    save_sae(sae, tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "d_sae": 32}))
    with pytest.raises(FeatstoreError, match=r"W_enc has shape \(8, 16\), expected \(8, 32\)"):
        load_sae(tmp_path)
    (tmp_path / "cfg.json").write_text(json.dumps({**cfg, "architecture": "matching_pursuit"}))
    with pytest.raises(FeatstoreError, match="not supported"):
        load_sae(tmp_path)
    with pytest.raises(FeatstoreError, match="not an SAE folder"):
        load_sae(tmp_path / "nowhere")
    with pytest.raises(FeatstoreError, match="needs 0 < k"):
        TopKConfig(d_in=8, d_sae=16)
