"""Evaluate an SAE on token blocks: one pass of three forwards per batch (clean, with the SAE's
reconstruction spliced in at its hook, with the hook zero-ablated) gives every stored metric.

Metrics (all means over the evaluation tokens; `saes.metrics` stores them, docs/saes.md#evaluation):

- reconstruction: `mse` (per element), `fvu` = Σ‖x − x̂‖² / Σ‖x − x̄‖², `cossim` (mean cosine of x and x̂),
  `explained_variance_legacy` (SAEBench's per-token 1 − ‖x − x̂‖² / ‖x − x̄_batch‖², x̄ over the forward batch);
- sparsity: `l0`, `l0_fraction`, `l1` (Σ|f| per token), `dead_fraction` and the frequency bands of the
  per-feature density (`frequency_bands`);
- shrinkage: `l2_norm_in`, `l2_norm_out`, `l2_ratio` (mean per-token ‖x̂‖ / ‖x‖, an input norm below 1e-4
  counted as 1, as SAEBench does) and `relative_reconstruction_bias` = E‖x̂‖² / E[x·x̂] (Rajamanoharan et
  al. 2024, *Gated SAEs*, eq. 10: 1 for an unbiased scale, below 1 for shrinkage), pooled over all tokens;
- the model: CE loss of the clean, spliced and ablated forwards and `ce_loss_recovered`; the KL
  divergence KL(P_clean ‖ P_spliced) of the next-token distribution at every position,
  `kl_div_with_sae` and `kl_div_with_ablation`, and SAEBench's `kl_div_score` = (KL_ablation − KL_sae) / KL_ablation.

`featstore.saes.saebench` writes the same numbers as SAEBench's `core` eval result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from featstore.models.capture import capture_mlp_hidden, splice_mlp_hidden
from featstore.models.hf import resolve_device
from featstore.saes.base import SAE

SMALL_NORM = 1e-4  # an input norm below this counts as 1 in l2_ratio (SAEBench's guard)
BANDS = (0.01, 0.1)  # SAEBench's frequency bands: features firing on more than 1 % / 10 % of tokens


@dataclass
class Evaluation:
    """What one pass measures: the stored metrics, each feature's firing frequency (fraction of tokens)
    and the number of blocks it fired in at least once (SAEBench's consistent-activation heuristic)."""

    metrics: dict
    density: np.ndarray
    blocks_fired: np.ndarray
    n_blocks: int
    block_len: int
    batch_blocks: int
    n_batches: int


def _kl_sum(log_p: torch.Tensor, logits: torch.Tensor, rows: int = 8) -> float:
    """Σ over positions of KL(P ‖ Q), P from clean log-probabilities `log_p`, Q from `logits` (a few
    blocks at a time: a batch's vocabulary-wide float32 temporaries stay small)."""
    total = 0.0
    for start in range(0, len(log_p), rows):
        lp = log_p[start : start + rows]
        log_q = logits[start : start + rows].float().log_softmax(dim=-1)
        total += float((lp.exp() * (lp - log_q)).sum(dim=-1).double().sum())
    return total


def frequency_bands(density: np.ndarray) -> dict:
    """SAEBench's frequency metrics of per-feature densities: the share of features firing on more than
    1 % (10 %) of tokens, those features' share of all firings, and the share that fired at all."""
    density = np.asarray(density, dtype=np.float64)
    total = density.sum()
    out = {}
    for band, name in zip(BANDS, ("1", "10")):
        over = density > band
        out[f"freq_over_{name}_percent"] = float(over.mean())
        out[f"normalized_freq_over_{name}_percent"] = float(density[over].sum() / total) if total > 0 else 0.0
    out["frac_alive"] = float((density > 0).mean())
    return out


@torch.no_grad()
def evaluation(model, sae: SAE, blocks: np.ndarray, *, layer: int | str, batch_blocks: int, device) -> Evaluation:
    """Every metric of `sae` over `blocks` (n_blocks, block_len) in one pass (see the module docstring)."""
    device = resolve_device(device)
    d_sae = sae.cfg.d_sae
    fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    blocks_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
    sums = torch.zeros(sae.cfg.d_in, dtype=torch.float64, device=device)
    acc = dict.fromkeys(("sq_err", "total_sq", "l0", "l1", "cos", "norm_in", "norm_out", "ratio", "out_sq", "dot",
                         "legacy", "kl_sae", "kl_ablation"), 0.0)
    ce = {"clean": 0.0, "reconstruction": 0.0, "zero_ablation": 0.0}
    n_tokens = n_positions = n_batches = 0
    for start in range(0, len(blocks), batch_blocks):
        n_batches += 1
        ids = torch.as_tensor(blocks[start : start + batch_blocks], device=device)
        with capture_mlp_hidden(model, layer) as captured:
            clean = model(input_ids=ids, labels=ids, use_cache=False)
        ce["clean"] += clean.loss.item() * len(ids)
        log_p = clean.logits.float().log_softmax(dim=-1)
        del clean
        x = captured.value.reshape(-1, sae.cfg.d_in).float()
        recon, feats = sae(x)
        recon = recon.float()
        err = (recon - x).pow(2).sum(dim=-1)
        acc["sq_err"] += err.sum().item()
        acc["total_sq"] += x.double().pow(2).sum().item()
        sums += x.double().sum(dim=0)
        centred_sq = (x - x.mean(dim=0)).pow(2).sum(dim=-1)
        acc["legacy"] += (1 - err / centred_sq).double().sum().item()
        active = feats > 0
        fired += active.sum(dim=0)
        blocks_fired += active.reshape(len(ids), -1, d_sae).any(dim=1).sum(dim=0)
        acc["l0"] += active.sum().item()
        acc["l1"] += feats.abs().double().sum().item()
        norm_in, norm_out = x.norm(dim=-1), recon.norm(dim=-1)
        acc["norm_in"] += norm_in.double().sum().item()
        acc["norm_out"] += norm_out.double().sum().item()
        acc["ratio"] += (norm_out / torch.where(norm_in.abs() < SMALL_NORM, 1.0, norm_in)).double().sum().item()
        acc["out_sq"] += recon.double().pow(2).sum().item()
        acc["dot"] += (x.double() * recon.double()).sum().item()
        acc["cos"] += torch.nn.functional.cosine_similarity(x, recon, dim=-1).double().sum().item()
        n_tokens += len(x)
        with splice_mlp_hidden(model, layer, lambda a: sae(a.float())[0].to(a.dtype)):
            spliced = model(input_ids=ids, labels=ids, use_cache=False)
        ce["reconstruction"] += spliced.loss.item() * len(ids)
        acc["kl_sae"] += _kl_sum(log_p, spliced.logits)
        del spliced
        with splice_mlp_hidden(model, layer, torch.zeros_like):
            ablated = model(input_ids=ids, labels=ids, use_cache=False)
        ce["zero_ablation"] += ablated.loss.item() * len(ids)
        acc["kl_ablation"] += _kl_sum(log_p, ablated.logits)
        del ablated, log_p
        n_positions += ids.numel()
    ce = {k: v / len(blocks) for k, v in ce.items()}
    variance = acc["total_sq"] - (sums.pow(2).sum().item() / n_tokens)
    density = (fired.double() / n_tokens).cpu().numpy()
    gap = ce["zero_ablation"] - ce["clean"]
    kl_sae, kl_ablation = acc["kl_sae"] / n_positions, acc["kl_ablation"] / n_positions
    metrics = {
        "eval_tokens": n_tokens,
        "mse": acc["sq_err"] / (n_tokens * sae.cfg.d_in),
        "fvu": acc["sq_err"] / variance,
        "l0": acc["l0"] / n_tokens,
        "l0_fraction": acc["l0"] / n_tokens / d_sae,
        "dead_fraction": float((density == 0).mean()),
        "ce_clean": ce["clean"],
        "ce_reconstruction": ce["reconstruction"],
        "ce_zero_ablation": ce["zero_ablation"],
        "ce_loss_recovered": (ce["zero_ablation"] - ce["reconstruction"]) / gap if gap > 0 else float("nan"),
        "density_histogram": density_histogram(density),
        # the metrics of SAEBench's core eval (featstore.saes.saebench)
        "kl_div_with_sae": kl_sae,
        "kl_div_with_ablation": kl_ablation,
        "kl_div_score": (kl_ablation - kl_sae) / kl_ablation if kl_ablation > 0 else float("nan"),
        "cossim": acc["cos"] / n_tokens,
        "explained_variance_legacy": acc["legacy"] / n_tokens,
        "l1": acc["l1"] / n_tokens,
        "l2_norm_in": acc["norm_in"] / n_tokens,
        "l2_norm_out": acc["norm_out"] / n_tokens,
        "l2_ratio": acc["ratio"] / n_tokens,
        "relative_reconstruction_bias": acc["out_sq"] / acc["dot"] if acc["dot"] != 0 else float("nan"),
        **frequency_bands(density),
    }
    return Evaluation(metrics, density, blocks_fired.cpu().numpy(), len(blocks), blocks.shape[1], batch_blocks, n_batches)


def evaluate(
    model, sae: SAE, blocks: np.ndarray, *, layer: int, batch_blocks: int, device
) -> tuple[dict, np.ndarray]:
    """(metrics, per-feature density) over `blocks`: `evaluation`'s metrics and density."""
    result = evaluation(model, sae, blocks, layer=layer, batch_blocks=batch_blocks, device=device)
    return result.metrics, result.density


def density_histogram(density: np.ndarray, bins: int = 20) -> dict:
    """Counts of log10(firing frequency) over features that fired, plus the count that never fired."""
    alive = density[density > 0]
    low = math.floor(math.log10(alive.min())) if len(alive) else -6
    counts, edges = np.histogram(np.log10(alive), bins=bins, range=(low, 0))
    return {
        "log10_density_edges": [round(float(e), 4) for e in edges],
        "counts": [int(c) for c in counts],
        "never_fired": int((density == 0).sum()),
    }


def plot_density(density: np.ndarray, path: Path, title: str) -> Path:
    """The feature-density histogram as a PNG (log10 firing frequency; dead features noted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hist = density_histogram(density)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    edges = hist["log10_density_edges"]
    ax.stairs(hist["counts"], edges, fill=True)
    ax.set_xlabel("log10 feature density (fraction of tokens a feature fires on)")
    ax.set_ylabel("features")
    ax.set_title(f"{title}  (never fired: {hist['never_fired']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
