"""SAEBench's `core` eval result: `featstore sae eval SAE --saebench OUT.json` validates against SAEBench's own
schema, and each metric featstore adds for it (KL, cosine, shrinkage, L1, frequency bands, the weight
statistics) equals an independent computation on the same tiny inputs.

The schema is read from the sae-bench package itself, installed without its dependencies into .oracles/
(tests/oracles.txt; `make test` installs it):

    .venv/bin/python -m pip install --no-deps --no-compile --target .oracles sae-bench==0.6.0
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, run_cli

from featstore.saes import build_sae
from featstore.saes.evaluation import evaluation
from featstore.saes.saebench import max_cosine_to_others, weight_metrics

SCHEMA_IN_WHEEL = Path("sae_bench", "evals", "core", "eval_output_schema_core.json")
ORACLE_INSTALL = ".venv/bin/python -m pip install --no-deps --no-compile --target .oracles sae-bench==0.6.0"
BLOCK_LEN = 24


# --- the oracle: SAEBench's schema, from its installed package --------------------------------------


def saebench_schema() -> tuple[dict, str]:
    """(SAEBench's core schema, the sae-bench version it came from), read from the installed package."""
    spec = importlib.util.find_spec("sae_bench")  # finds the package without importing it (it needs sae_lens, ...)
    roots = [Path(p).parent for p in (spec.submodule_search_locations or [])] if spec else []
    roots.append(REPO / ".oracles")
    for root in roots:
        if (root / SCHEMA_IN_WHEEL).is_file():
            versions = [p.name.split("-")[1].removesuffix(".dist-info") for p in root.glob("sae_bench-*.dist-info")]
            return json.loads((root / SCHEMA_IN_WHEEL).read_text()), (versions or ["unknown"])[0]
    pytest.skip(f"SAEBench's core schema ({SCHEMA_IN_WHEEL}) is not installed: the sae-bench oracle is missing; "
                f"install it with `{ORACLE_INSTALL}` (the sae-bench line of tests/oracles.txt, which `make test` installs)")


def closed(schema: dict) -> dict:
    """`schema` with every object of SAEBench's own that lists its properties closed (additionalProperties
    false), so a misspelt metric fails validation instead of passing as an extra key."""
    schema = json.loads(json.dumps(schema))
    for definition in [schema, *schema["$defs"].values()]:
        if definition.get("type") == "object" and "properties" in definition:
            definition["additionalProperties"] = False
    return schema


# --- tiny inputs: the session's random Mistral (hidden 32, MLP 64) and token blocks ---------------------


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    blocks = np.random.default_rng(0).integers(0, model.config.vocab_size, size=(10, BLOCK_LEN))
    return model, blocks


def _down_proj(model):
    return model.model.layers[0].mlp.down_proj  # its input is the MLP hidden activation (blocks.0.mlp.hook_post)


@torch.no_grad()
def reference(model, sae, blocks) -> dict:
    """Every new metric computed here, with its own hooks and torch's own KL, over all of `blocks` at once."""
    ids = torch.as_tensor(blocks)
    seen = {}

    def record(_module, args):
        seen["x"] = args[0].detach().float()

    def run(replace=None):
        hook = _down_proj(model).register_forward_pre_hook(
            record if replace is None else (lambda _m, args: (replace(args[0]),)))
        try:
            return model(input_ids=ids).logits.float()
        finally:
            hook.remove()

    clean = run()
    x = seen["x"].reshape(-1, sae.cfg.d_in)
    feats = sae.encode(x).float()
    recon = sae.decode(feats).float()
    spliced = run(lambda a: sae.decode(sae.encode(a.float())).to(a.dtype))
    ablated = run(torch.zeros_like)

    def kl(new):  # KL(P_clean || P_new) per position, by torch
        return torch.nn.functional.kl_div(new.log_softmax(-1), clean.log_softmax(-1), reduction="none",
                                          log_target=True).sum(-1).mean().item()

    active = feats > 0
    density = active.double().mean(0).numpy()
    per_block = active.reshape(len(blocks), BLOCK_LEN, -1)
    norm_in, norm_out = x.norm(dim=-1), recon.norm(dim=-1)
    sse = (x - recon).pow(2).sum(-1)
    kl_sae, kl_ablation = kl(spliced), kl(ablated)
    return {
        "kl_div_with_sae": kl_sae,
        "kl_div_with_ablation": kl_ablation,
        "kl_div_score": (kl_ablation - kl_sae) / kl_ablation,
        "cossim": torch.nn.functional.cosine_similarity(x, recon, dim=-1).mean().item(),
        "l2_norm_in": norm_in.mean().item(),
        "l2_norm_out": norm_out.mean().item(),
        "l2_ratio": (norm_out / norm_in).mean().item(),
        "relative_reconstruction_bias": (norm_out.pow(2).mean() / (x * recon).sum(-1).mean()).item(),
        "l1": feats.abs().sum(-1).mean().item(),
        "explained_variance_legacy": (1 - sse / (x - x.mean(0)).pow(2).sum(-1)).mean().item(),
        "freq_over_1_percent": float((density > 0.01).mean()),
        "freq_over_10_percent": float((density > 0.1).mean()),
        "normalized_freq_over_1_percent": float(density[density > 0.01].sum() / density.sum()),
        "normalized_freq_over_10_percent": float(density[density > 0.1].sum() / density.sum()),
        "frac_alive": float((density > 0).mean()),
        "_blocks_fired": per_block.any(dim=1).sum(0).numpy(),
        "_tokens_fired": active.sum(0).numpy(),
    }


def varied_sae(model, blocks, seed=0):
    """A random ReLU SAE (64 -> 128) whose features fire on 0 % to about 60 % of the blocks' tokens."""
    torch.manual_seed(seed)
    sae = build_sae("relu", d_in=64, d_sae=128).eval()
    seen = {}
    hook = _down_proj(model).register_forward_pre_hook(lambda _m, args: seen.update(x=args[0].detach()))
    with torch.no_grad():
        model(input_ids=torch.as_tensor(blocks))
        hook.remove()
        pre = sae.pre_activation(seen["x"].reshape(-1, 64).float())
        quantiles = torch.linspace(0.4, 1.2, 128).clamp(max=1.0)  # the last features never fire
        sae.b_enc -= torch.stack([pre[:, f].quantile(q) for f, q in enumerate(quantiles)]) + 1e-6
        sae.b_dec += 0.01  # a decoder bias, so the reconstruction is not a pure rescaling
    return sae


def identity_sae(scale: float = 1.0):
    """x -> scale · (ReLU(x) - ReLU(-x)) through a 64 -> 128 dictionary: exactly scale · x."""
    sae = build_sae("relu", d_in=64, d_sae=128).eval()
    eye = torch.eye(64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], dim=1))
        sae.W_dec.copy_(torch.cat([eye, -eye], dim=0) * scale)
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


# --- the metrics ----------------------------------------------------------------------------------


def test_each_new_metric_equals_an_independent_computation(tiny_lm):
    model, blocks = tiny_lm
    sae = varied_sae(model, blocks)
    ref = reference(model, sae, blocks)
    result = evaluation(model, sae, blocks, layer=0, batch_blocks=len(blocks), device="cpu")
    m = result.metrics
    assert 0 < ref["frac_alive"] < 1 and 0 < ref["freq_over_10_percent"] < ref["freq_over_1_percent"] < 1, \
        "the SAE should span the frequency bands, or the band checks test nothing"
    assert ref["kl_div_with_sae"] > 1e-6 and ref["relative_reconstruction_bias"] != pytest.approx(1, abs=1e-3)
    for key, want in ref.items():
        if not key.startswith("_"):
            assert m[key] == pytest.approx(want, rel=1e-4, abs=1e-7), key
    np.testing.assert_array_equal(result.blocks_fired, ref["_blocks_fired"])
    np.testing.assert_allclose(result.density * m["eval_tokens"], ref["_tokens_fired"])
    assert m["frac_alive"] == pytest.approx(1 - m["dead_fraction"])

    # the pass is split into forward batches; every metric but the per-batch legacy explained variance is the same
    split = evaluation(model, sae, blocks, layer=0, batch_blocks=3, device="cpu")
    assert split.n_batches == 4 and split.n_blocks == 10 and split.block_len == BLOCK_LEN
    for key, value in m.items():
        if key not in ("explained_variance_legacy", "density_histogram"):
            assert split.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-8, nan_ok=True), key
    np.testing.assert_array_equal(split.blocks_fired, result.blocks_fired)


@pytest.mark.parametrize("scale", [1.0, 0.5, 0.0])
def test_known_reconstructions(tiny_lm, scale):
    """x̂ = x: KL 0, cosine 1, relative bias and l2 ratio 1; x̂ = x/2: both 1/2, cosine still 1; x̂ = 0 is
    the zero ablation: KL and CE equal the ablation's, the scores 0."""
    model, blocks = tiny_lm
    m = evaluation(model, identity_sae(scale), blocks, layer=0, batch_blocks=4, device="cpu").metrics
    assert m["kl_div_with_ablation"] > 1e-6  # small: the random MLP adds little to the residual stream
    if scale == 0:
        assert m["kl_div_with_sae"] == pytest.approx(m["kl_div_with_ablation"], rel=1e-6)
        assert m["kl_div_score"] == pytest.approx(0, abs=1e-6)
        assert m["ce_reconstruction"] == pytest.approx(m["ce_zero_ablation"], rel=1e-6)
        assert m["l2_norm_out"] == 0 and m["l2_ratio"] == 0 and m["cossim"] == 0
        assert math.isnan(m["relative_reconstruction_bias"])  # 0 / 0: undefined, written -1 in SAEBench's file
        return
    if scale == 1:
        assert m["kl_div_with_sae"] == pytest.approx(0, abs=1e-12)
        assert m["kl_div_score"] == pytest.approx(1, abs=1e-6)
        assert m["ce_reconstruction"] == pytest.approx(m["ce_clean"], abs=1e-6)
        assert m["fvu"] == pytest.approx(0, abs=1e-10) and m["explained_variance_legacy"] == pytest.approx(1)
    else:
        assert m["kl_div_with_sae"] > 1e-6 and m["kl_div_score"] < 1
    assert m["cossim"] == pytest.approx(1, abs=1e-6)
    assert m["relative_reconstruction_bias"] == pytest.approx(scale, rel=1e-6)
    assert m["l2_ratio"] == pytest.approx(scale, rel=1e-6)
    assert m["l2_norm_out"] == pytest.approx(scale * m["l2_norm_in"], rel=1e-6)
    # one feature of each ± pair fires on every token: the one whose coordinate's sign it carries
    assert m["l0"] == pytest.approx(64, abs=0.01)


def test_weight_statistics_equal_the_full_similarity_matrix():
    torch.manual_seed(1)
    sae = build_sae("relu", d_in=16, d_sae=40)
    with torch.no_grad():
        sae.W_enc.normal_()
        sae.b_enc.normal_()
    got = weight_metrics(sae)

    def full(vectors):  # every pair's cosine, the diagonal left out
        unit = torch.nn.functional.normalize(vectors, dim=1)
        sims = unit @ unit.T
        sims.fill_diagonal_(float("-inf"))
        return sims.max(dim=1).values.numpy()

    enc, dec = sae.W_enc.detach().T, sae.W_dec.detach()
    np.testing.assert_allclose(got["max_encoder_cosine_sim"], full(enc), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["max_decoder_cosine_sim"], full(dec), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(max_cosine_to_others(enc, chunk=7).numpy(), full(enc), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["encoder_norm"], np.linalg.norm(enc.numpy(), axis=1), rtol=1e-5)
    np.testing.assert_allclose(got["encoder_bias"], sae.b_enc.detach().numpy())
    cos = [float(enc[f] @ dec[f] / enc[f].norm() / dec[f].norm()) for f in range(40)]
    np.testing.assert_allclose(got["encoder_decoder_cosine_sim"], cos, rtol=1e-5, atol=1e-6)


# --- the file: `sae eval --saebench` ------------------------------------------------------------------


def test_sae_eval_writes_a_core_result_that_validates_against_saebench_schema(trainable_warehouse, tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (featstore[test]) is not installed")
    schema, version = saebench_schema()
    from featstore.saes.presets import sae_preset
    from featstore.saes.training import train_sae

    settings = sae_preset("tiny", tokens=24 * 16 * 6, batch_blocks=16, expansion=2, eval_tokens=24 * 16)
    row = train_sae(trainable_warehouse, "m", settings=settings, sae_id="m-sb", device="cpu", progress=False)
    out = tmp_path / "results" / "featstore_m_m-sb_eval_results.json"
    result = run_cli(trainable_warehouse, "sae", "eval", "m-sb", "--tokens", "240", "--device", "cpu",
                     "--saebench", str(out))
    assert result.exit_code == 0, result.output
    assert f"SAEBench core eval result: {out}" in result.output and "KL with SAE" in result.output

    doc = json.loads(out.read_text())  # strict JSON: NaN is written as SAEBench writes it, -1
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    jsonschema.validate(doc, closed(schema), cls=jsonschema.Draft202012Validator)
    # every metric the schema names is filled, required or not
    for category, ref in schema["$defs"]["CoreMetricCategories"]["properties"].items():
        names = schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]["properties"]
        assert set(doc["eval_result_metrics"][category]) == set(names), (category, version)
    details = doc["eval_result_details"]
    assert [d["index"] for d in details] == list(range(row["d_sae"]))
    assert set(details[0]) == set(schema["$defs"]["CoreFeatureMetric"]["properties"])

    # the same numbers as the metrics `sae eval` stored
    stored = json.loads(trainable_warehouse.scalar("SELECT metrics FROM saes WHERE id = 'm-sb'"))
    metrics = doc["eval_result_metrics"]

    def same(value, want):
        return value == (-1 if isinstance(want, float) and math.isnan(want) else pytest.approx(want))

    assert stored["eval_tokens"] == 240 == metrics["token_stats"]["total_tokens_eval_reconstruction"]
    pairs = {
        ("model_behavior_preservation", "kl_div_with_sae"): "kl_div_with_sae",
        ("model_behavior_preservation", "kl_div_with_ablation"): "kl_div_with_ablation",
        ("model_behavior_preservation", "kl_div_score"): "kl_div_score",
        ("model_performance_preservation", "ce_loss_score"): "ce_loss_recovered",
        ("model_performance_preservation", "ce_loss_without_sae"): "ce_clean",
        ("model_performance_preservation", "ce_loss_with_sae"): "ce_reconstruction",
        ("model_performance_preservation", "ce_loss_with_ablation"): "ce_zero_ablation",
        ("reconstruction_quality", "mse"): "mse",
        ("reconstruction_quality", "cossim"): "cossim",
        ("shrinkage", "l2_ratio"): "l2_ratio",
        ("shrinkage", "relative_reconstruction_bias"): "relative_reconstruction_bias",
        ("sparsity", "l0"): "l0",
        ("sparsity", "l1"): "l1",
        ("misc_metrics", "frac_alive"): "frac_alive",
        ("misc_metrics", "freq_over_1_percent"): "freq_over_1_percent",
    }
    for (category, name), key in pairs.items():
        assert same(metrics[category][name], stored[key]), (category, name)
    assert metrics["reconstruction_quality"]["explained_variance"] == pytest.approx(1 - stored["fvu"])
    density = np.array([d["feature_density"] for d in details])
    assert (density == 0).mean() == pytest.approx(stored["dead_fraction"])
    assert doc["eval_config"]["context_size"] == BLOCK_LEN and doc["eval_config"]["model_name"] == "m"
    assert doc["sae_lens_id"] == "m-sb" and doc["sae_cfg_dict"]["d_sae"] == row["d_sae"]
    # what SAEBench's graphing_utils.get_eval_results reads from sae_cfg_dict
    assert doc["sae_cfg_dict"]["architecture"] == "standard" and "training_tokens" in doc["sae_cfg_dict"]
    assert doc["eval_result_unstructured"]["featstore_metrics"]["eval_tokens"] == 240


def test_sae_eval_saebench_refuses_a_folder(trainable_warehouse, tmp_path):
    result = run_cli(trainable_warehouse, "sae", "eval", "ghost", "--saebench", str(tmp_path))
    assert result.exit_code != 0 and "is a directory" in result.output
