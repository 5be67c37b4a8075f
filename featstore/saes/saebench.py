"""SAEBench's `core` eval result for a featstore SAE, so it sits beside SAEBench's leaderboard.

SAEBench (github.com/adamkarvonen/SAEBench, PyPI `sae-bench`) writes one JSON per SAE and eval type;
the `core` one follows `sae_bench/evals/core/eval_output_schema_core.json` in its wheel (generated from
the pydantic model `CoreEvalOutput` of `sae_bench/evals/core/eval_output.py`). This module fills it from
one featstore evaluation pass (`featstore.saes.evaluation.evaluation`) plus the SAE's weights; it does not
import SAEBench. The definitions are SAEBench's (`sae_bench/evals/core/main.py`, version 0.6.0), with
the exceptions listed in docs/saes.md#saebench-core-result: the tokens are featstore's evaluation blocks
(no BOS/EOS/pad masking), `mse` is featstore's per-element MSE and `explained_variance` is 1 − FVU.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from pathlib import Path

import numpy as np
import torch

from featstore.saes.base import SAE
from featstore.saes.evaluation import Evaluation

EVAL_TYPE_ID = "core"
NOT_RUN_BY_SAEBENCH = "Unknown"  # sae_bench_commit_hash: what SAEBench itself writes when it has no git hash
MISSING = -1  # SAEBench writes NaN (an undefined score) as -1


def _number(value: float) -> float:
    value = float(value)
    return MISSING if math.isnan(value) or math.isinf(value) else value


def max_cosine_to_others(vectors: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """For each row of `vectors`, its largest cosine similarity with any other row (chunked, F x chunk)."""
    unit = torch.nn.functional.normalize(vectors.float(), dim=1)
    out = torch.empty(len(unit), dtype=unit.dtype)
    for start in range(0, len(unit), chunk):
        sims = unit[start : start + chunk] @ unit.T
        rows = torch.arange(len(sims))
        sims[rows, rows + start] = float("-inf")
        out[start : start + chunk] = sims.max(dim=1).values.cpu()
    return out


@torch.no_grad()
def weight_metrics(sae: SAE) -> dict[str, np.ndarray]:
    """SAEBench's per-feature weight statistics: encoder bias (b_mag for gated SAEs, zeros without
    one), encoder norm, encoder-decoder cosine and each encoder (decoder) vector's largest cosine with
    another feature's."""
    enc = sae.W_enc.detach().float().T  # (d_sae, d_in): one encoder vector per feature
    dec = sae.W_dec.detach().float()    # (d_sae, d_in)
    bias = getattr(sae, "b_mag", None) if sae.architecture == "gated" else getattr(sae, "b_enc", None)
    return {
        "encoder_bias": (bias.detach().float().cpu().numpy() if bias is not None else np.zeros(sae.cfg.d_sae)),
        "encoder_norm": enc.norm(dim=1).cpu().numpy(),
        "encoder_decoder_cosine_sim": torch.nn.functional.cosine_similarity(enc, dec, dim=1).cpu().numpy(),
        "max_encoder_cosine_sim": max_cosine_to_others(enc).numpy(),
        "max_decoder_cosine_sim": max_cosine_to_others(dec).numpy(),
    }


def core_result(sae: SAE, result: Evaluation, *, sae_id: str, model_name: str, dataset: str, llm_dtype: str,
                featstore_version: str | None = None) -> dict:
    """The `core` eval result (a dict in SAEBench's CoreEvalOutput layout) of `sae` evaluated as `result`."""
    m = result.metrics
    weights = weight_metrics(sae)
    n_tokens = int(m["eval_tokens"])
    with np.errstate(invalid="ignore", divide="ignore"):
        consistency = np.rint(result.density * n_tokens) / result.blocks_fired  # tokens fired per block fired in
    details = [
        {"index": i, "feature_density": _number(result.density[i]),
         "consistent_activation_heuristic": _number(consistency[i]),
         **{name: _number(values[i]) for name, values in weights.items()}}
        for i in range(sae.cfg.d_sae)
    ]
    metrics = {
        "model_behavior_preservation": {
            "kl_div_score": m["kl_div_score"], "kl_div_with_ablation": m["kl_div_with_ablation"],
            "kl_div_with_sae": m["kl_div_with_sae"]},
        "model_performance_preservation": {
            "ce_loss_score": m["ce_loss_recovered"], "ce_loss_with_ablation": m["ce_zero_ablation"],
            "ce_loss_with_sae": m["ce_reconstruction"], "ce_loss_without_sae": m["ce_clean"]},
        "reconstruction_quality": {
            "explained_variance": 1 - m["fvu"], "explained_variance_legacy": m["explained_variance_legacy"],
            "mse": m["mse"], "cossim": m["cossim"]},
        "shrinkage": {
            "l2_norm_in": m["l2_norm_in"], "l2_norm_out": m["l2_norm_out"], "l2_ratio": m["l2_ratio"],
            "relative_reconstruction_bias": m["relative_reconstruction_bias"]},
        "sparsity": {"l0": m["l0"], "l1": m["l1"]},
        "token_stats": {"total_tokens_eval_reconstruction": n_tokens, "total_tokens_eval_sparsity_variance": n_tokens},
        "misc_metrics": {
            **{k: m[k] for k in ("freq_over_1_percent", "freq_over_10_percent", "normalized_freq_over_1_percent",
                                 "normalized_freq_over_10_percent")},
            "average_max_encoder_cosine_sim": float(weights["max_encoder_cosine_sim"].mean()),
            "average_max_decoder_cosine_sim": float(weights["max_decoder_cosine_sim"].mean()),
            "frac_alive": m["frac_alive"]},
    }
    metrics = {group: {k: v if isinstance(v, int) else _number(v) for k, v in values.items()}
               for group, values in metrics.items()}
    config = {
        "model_name": model_name, "llm_dtype": llm_dtype, "batch_size_prompts": result.batch_blocks,
        "n_eval_reconstruction_batches": result.n_batches, "n_eval_sparsity_variance_batches": result.n_batches,
        "dataset": dataset, "context_size": result.block_len,
        "compute_kl": True, "compute_ce_loss": True, "compute_l2_norms": True, "compute_sparsity_metrics": True,
        "compute_variance_metrics": True, "compute_featurewise_density_statistics": True,
        "compute_featurewise_weight_based_metrics": True, "exclude_special_tokens_from_reconstruction": False,
        "verbose": False,
    }
    return {
        "eval_type_id": EVAL_TYPE_ID,
        "eval_config": config,
        "eval_id": str(uuid.uuid4()),
        "datetime_epoch_millis": int(time.time() * 1000),
        "eval_result_metrics": metrics,
        "eval_result_details": details,
        "sae_bench_commit_hash": NOT_RUN_BY_SAEBENCH,
        "sae_lens_id": sae_id,
        "sae_lens_release_id": f"featstore_{model_name}",
        "sae_lens_version": None,
        "sae_cfg_dict": sae.saelens_config(),
        "eval_result_unstructured": {
            "producer": f"featstore {featstore_version or _featstore_version()}",
            "eval_blocks": result.n_blocks,
            "featstore_metrics": _plain(m),
        },
    }


def write_core_result(path: str | Path, result: dict) -> Path:
    """Write `result` as JSON (strict: no NaN) to `path`, its folder created; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _plain(value):
    """`value` with NaN / inf numbers as SAEBench writes them (-1), for strict JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _number(value)
    return value


def _featstore_version() -> str:
    from featstore import __version__

    return __version__
