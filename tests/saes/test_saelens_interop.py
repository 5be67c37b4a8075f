"""SAELens 6 folders in and out, checked against SAELens itself (the `sae-lens` test dependency).

Each architecture is built with SAELens' own classes, saved by SAELens, registered with
`featstore sae add`, ingested, and the stored activations compared with SAELens' `encode` on the
same model activations: max difference <= 1e-6 and the same active (token, feature) pairs. The other
way, featstore's saves load with `SAE.load_from_disk` and encode identically. Every cfg.json field
that changes encoding is fed a non-default value: it is either encoded as SAELens does or refused.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import invoke

sae_lens = pytest.importorskip("sae_lens", reason="the SAELens oracle (pip install sae-lens) is not installed")

from featstore.errors import FeatstoreError  # noqa: E402
from featstore.saes import build_sae, load_sae, read_folder, save_sae  # noqa: E402
from featstore.saes.saelens import ENCODING_FIELDS  # noqa: E402

MLP, RESID = "blocks.0.mlp.hook_post", "blocks.0.hook_resid_post"
WIDTH = {MLP: 64, RESID: 32}  # the tiny Mistral of conftest: hidden 32, MLP 64


def _randomize(sae, seed: int, threshold: float | None = None) -> None:
    """Weights with non-unit decoder rows and non-zero biases, so every term of encode matters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.dtype) * (0.3 if "b_" in name else 1.0))
        if threshold is not None:
            sae.threshold.copy_(torch.rand(sae.threshold.shape, generator=gen) * threshold + 0.05)


def saelens_sae(kind: str, hook: str = MLP, seed: int = 0, **fields):
    """An SAELens SAE of `kind`, built with SAELens' classes."""
    from sae_lens import (
        GatedSAE,
        GatedSAEConfig,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    d_in = WIDTH[hook]
    make = {
        "standard": lambda: StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=48, **fields)),
        "topk": lambda: TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=48, k=6, **fields)),
        "topk-rescaled": lambda: TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=48, k=6, rescale_acts_by_decoder_norm=True, **fields)),
        "jumprelu": lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=48, **fields)),
        "gated": lambda: GatedSAE(GatedSAEConfig(d_in=d_in, d_sae=48, **fields)),
    }
    sae = make[kind]()
    _randomize(sae, seed, threshold=1.0 if kind == "jumprelu" else None)
    sae.cfg.metadata.hook_name = hook
    sae.cfg.metadata.model_name = "base"
    return sae


def batchtopk_inference_save(folder, seed: int = 0):
    """A BatchTopK SAE trained state saved as SAELens saves it for inference (a JumpReLU SAE)."""
    from sae_lens.saes.batchtopk_sae import (
        BatchTopKTrainingSAE,
        BatchTopKTrainingSAEConfig,
    )

    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=64, d_sae=48, k=4.0))
    _randomize(sae, seed)
    sae.topk_threshold = torch.tensor(0.7, dtype=torch.double)
    sae.cfg.metadata.hook_name = MLP
    sae.save_inference_model(folder)
    return sae_lens.SAE.load_from_disk(folder)


def _cli(wh, *args):
    result = invoke(*args, "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    return result.output


def _stored(wh, sae_id: str) -> dict[tuple[int, int], float]:
    table = pq.read_table(wh.resolve(wh.scalar("SELECT path FROM activation_partitions WHERE sae = ?", [sae_id])))  # stored relative to the root
    return {(t, f): a for t, f, a in zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act")))}


def _oracle(wh, tiny_model_dir, oracle, hook: str) -> dict[tuple[int, int], float]:
    """SAELens' encode of the very activations ingest encoded (same windows, same batches), as
    (tok, feature) -> act."""
    from featstore.activations.ingest import windows
    from featstore.models.capture import batch_activations
    from featstore.models.hf import load_model
    from featstore.text.slices import batched

    model = load_model(tiny_model_dir, "cpu")
    expected = {}
    with torch.no_grad():
        for batch in batched(windows(wh, "evalset", 256), 16):
            x = batch_activations(model, [torch.as_tensor(ids.astype(np.int64)) for _, ids in batch], hook, torch.device("cpu"))
            feats = oracle.encode(x.float()).float()
            toks = np.concatenate([t for t, _ in batch])
            rows, cols = torch.nonzero(feats > 0, as_tuple=True)
            expected.update(zip(zip(toks[rows.numpy()].tolist(), cols.tolist()), feats[rows, cols].tolist()))
    return expected


def _assert_same(got: dict, expected: dict) -> float:
    assert len(expected) > 0
    assert got.keys() == expected.keys(), f"{len(got.keys() ^ expected.keys())} active (tok, feature) pairs differ"
    diff = max(abs(got[key] - expected[key]) for key in expected)
    assert diff <= 1e-6, diff
    return diff


KINDS = [("standard", MLP), ("standard", RESID), ("topk", MLP), ("topk-rescaled", MLP), ("jumprelu", MLP),
         ("gated", MLP), ("batchtopk", MLP)]


@pytest.mark.parametrize("kind,hook", KINDS, ids=[f"{k}-{h.split('.')[-1]}" for k, h in KINDS])
def test_saelens_save_is_added_ingested_and_encoded_as_saelens_does(registered_warehouse, tiny_model_dir, tmp_path, kind, hook):
    folder = tmp_path / kind
    if kind == "batchtopk":
        oracle = batchtopk_inference_save(folder)
    else:
        oracle = saelens_sae(kind, hook, apply_b_dec_to_input=kind != "gated")
        oracle.save_model(folder)
    assert "hook_name" not in json.loads((folder / "cfg.json").read_text()), "SAELens 6 nests hook_name under metadata"
    out = _cli(registered_warehouse, "sae", "add", "s", str(folder), "--model", "base")
    assert f"{hook} {WIDTH[hook]} -> 48" in out
    _cli(registered_warehouse, "ingest", "base", "--sae", "s", "--device", "cpu")
    _assert_same(_stored(registered_warehouse, "s"), _oracle(registered_warehouse, tiny_model_dir, oracle, hook))


def test_older_flat_layout_is_read(registered_warehouse, tmp_path):
    """A pre-6 cfg.json: flat, `hook_point`, `activation_fn_str: topk` with its k in activation_fn_kwargs."""
    oracle = saelens_sae("topk")
    oracle.save_model(tmp_path / "old")
    cfg = {"d_in": 64, "d_sae": 48, "hook_point": MLP, "hook_point_layer": 0, "activation_fn_str": "topk",
           "activation_fn_kwargs": {"k": 6}, "apply_b_dec_to_input": True, "normalize_activations": None,
           "dtype": "float32", "model_name": "base", "sae_lens_training_version": "3.2.0"}
    (tmp_path / "old" / "cfg.json").write_text(json.dumps(cfg))
    assert type(sae_lens.SAE.load_from_disk(tmp_path / "old")).__name__ == "TopKSAE"
    x = torch.randn(40, 64)
    sae = load_sae(tmp_path / "old")
    assert sae.cfg.hook_name == MLP and sae.cfg.k == 6
    assert (sae.encode(x) - oracle.encode(x)).abs().max() <= 1e-6
    _cli(registered_warehouse, "sae", "add", "old", str(tmp_path / "old"), "--model", "base")


FEATSTORE_KINDS = [("relu", {}), ("topk", {"k": 5}), ("topk", {"k": 5, "rescale_acts_by_decoder_norm": True}),
                   ("jumprelu", {}), ("relu", {"dtype": "float64"}), ("relu", {"hook_name": RESID})]


@pytest.mark.parametrize("arch,options", FEATSTORE_KINDS)
def test_featstore_saves_load_in_saelens_and_encode_identically(tmp_path, arch, options):
    options = {"hook_name": MLP, **options}
    sae = build_sae(arch, d_in=16, d_sae=40, model_name="m", **options)
    sae = sae.to(getattr(torch, options.get("dtype", "float32")))
    _randomize(sae, 3)
    if arch == "jumprelu":
        with torch.no_grad():
            sae.log_threshold.copy_(torch.rand(40).add(0.05).log())
    save_sae(sae, tmp_path)
    oracle = sae_lens.SAE.load_from_disk(tmp_path)
    assert oracle.cfg.metadata.hook_name == options["hook_name"] and oracle.cfg.architecture() == read_folder(tmp_path)[0].saelens_names[0]
    x = torch.randn(200, 16)
    with torch.no_grad():
        ours, theirs = sae.encode(x), oracle.encode(x)
    assert torch.equal(ours > 0, theirs > 0)
    assert (ours - theirs).abs().max() <= 1e-6


def test_a_loaded_gated_sae_saves_back_for_saelens(tmp_path):
    saelens_sae("gated").save_model(tmp_path / "in")
    save_sae(load_sae(tmp_path / "in"), tmp_path / "out")
    x = torch.randn(100, 64)
    with torch.no_grad():
        assert (load_sae(tmp_path / "in").encode(x) - sae_lens.SAE.load_from_disk(tmp_path / "out").encode(x)).abs().max() <= 1e-6


# Every encoding field with a non-default value: "ok" (encoded as SAELens does) or refused.
FIELD_CASES = [
    ("architecture", "matching_pursuit", "refused"),
    ("architecture", "batchtopk", "refused"),
    ("activation_fn", "tanh-relu", "refused"),
    ("normalize_activations", "expected_average_only_in", "refused"),
    ("normalize_activations", "layer_norm", "refused"),
    ("normalize_activations", "constant_norm_rescale", "refused"),
    ("reshape_activations", "hook_z", "refused"),
    ("hook_head_index", 2, "refused"),
    ("finetuning_scaling_factor", True, "refused"),
    ("dtype", "float64", "ok"),
    ("dtype", "bfloat16", "ok"),
    ("dtype", "int8", "refused"),
    ("apply_b_dec_to_input", False, "ok"),
    ("rescale_acts_by_decoder_norm", True, "ok"),  # on a TopK SAE
    ("rescale_acts_by_decoder_norm", True, "refused"),  # on a standard SAE, where SAELens ignores it
]


def test_field_cases_cover_every_encoding_field():
    assert {field for field, _, _ in FIELD_CASES} == set(ENCODING_FIELDS)


@pytest.mark.parametrize("field,value,outcome", FIELD_CASES)
def test_each_encoding_field_is_supported_or_refused(tmp_path, field, value, outcome):
    kind = "topk" if field == "rescale_acts_by_decoder_norm" and outcome == "ok" else "standard"
    oracle = saelens_sae(kind)
    oracle.save_model(tmp_path)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    if field in ("activation_fn", "finetuning_scaling_factor"):  # fields of the older flat layout
        cfg = {**{k: v for k, v in cfg.items() if k != "metadata"}, "hook_point": MLP, field: value}
    elif field == "hook_head_index":
        cfg["metadata"][field] = value
    else:
        cfg[field] = value
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    if outcome == "refused":
        with pytest.raises(FeatstoreError, match=rf"{field}={value!r} is not supported"):
            read_folder(tmp_path)
        return
    oracle = sae_lens.SAE.load_from_disk(tmp_path)
    ours = load_sae(tmp_path)
    x = torch.randn(300, 64)
    with torch.no_grad():
        a, b = ours.encode(x).float(), oracle.encode(x).float()
    assert torch.equal(a > 0, b > 0) and (a - b).abs().max() <= 1e-6


def test_tensors_featstore_would_ignore_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    saelens_sae("standard").save_model(tmp_path)
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    save_file({**tensors, "scaling_factor": torch.ones(48)}, str(tmp_path / "sae_weights.safetensors"))
    read_folder(tmp_path)  # an all-ones pre-6 scaling factor changes nothing; SAELens drops it too
    save_file({**tensors, "scaling_factor": torch.full((48,), 2.0)}, str(tmp_path / "sae_weights.safetensors"))
    with pytest.raises(FeatstoreError, match="tensor 'scaling_factor' is not part of a relu SAE"):
        read_folder(tmp_path)
    save_file({**tensors, "topk_threshold": torch.tensor(0.5)}, str(tmp_path / "sae_weights.safetensors"))
    with pytest.raises(FeatstoreError, match="topk_threshold"):
        read_folder(tmp_path)
