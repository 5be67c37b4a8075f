"""What each crosscoder latent is: shared, parent-only or child-only by its decoder norms, and whether
an exclusive latent is real or an artefact of the L1 loss (Latent Scaling, Minder et al. 2025).

Relative norm ρ = ½((‖d_child‖ − ‖d_parent‖) / max(‖d_child‖, ‖d_parent‖) + 1): 0 writes to the parent
only, 1 to the child only, ½ to both alike. Classes: parent_only ρ ≤ 0.1, child_only ρ ≥ 0.9, shared
0.4 ≤ ρ ≤ 0.6, intermediate otherwise, dead when the latent never fires on the sample.

Latent Scaling, for an exclusive latent j with decoder d in the model it writes to: β(y), the factor
that best explains a target y by β·f_j·d over the sample, β = Σ f_j ⟨d, y⟩ / (‖d‖² Σ f_j²). In the
latent's own model, β(x − b_dec) says how much of f_j·d its activations hold (about 1). The other
model's activations split into the reconstruction without j (x̂ − b_dec − f_j d_j) and the error left
without j (x − x̂ + f_j d_j); ν_recon and ν_error are their β over the own model's. A truly exclusive
latent has both near 0: the other model has nothing of it. ν_error near 1 means the other model's
error still holds it (Complete Shrinkage), ν_recon near 1 that other latents write it there (Latent
Decoupling). A latent with either ν above ARTEFACT_NU is flagged as a likely artefact.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from featstore.crosscoders.model import Crosscoder

PARENT_ONLY, CHILD_ONLY, SHARED_BAND = 0.1, 0.9, (0.4, 0.6)
ARTEFACT_NU = 0.5
CLASSES = ("shared", "parent_only", "child_only", "intermediate", "dead")


def relative_norms(xc: Crosscoder) -> np.ndarray:
    norms = xc.decoder_norms().detach().cpu().double()
    return (0.5 * ((norms[:, 1] - norms[:, 0]) / norms.max(dim=1).values.clamp_min(1e-12) + 1)).numpy()


def latent_class(rho: float, fires: bool) -> str:
    if not fires:
        return "dead"
    if rho <= PARENT_ONLY:
        return "parent_only"
    if rho >= CHILD_ONLY:
        return "child_only"
    return "shared" if SHARED_BAND[0] <= rho <= SHARED_BAND[1] else "intermediate"


@torch.no_grad()
def describe_latents(xc: Crosscoder, sample: torch.Tensor) -> pa.Table:
    """One row per latent: decoder norms, relative norm, firing frequency on `sample` (raw (n, 2, d_in)
    activations), class and, for exclusive latents, the Latent Scaling ratios."""
    x = xc.scaled(sample)
    feats = xc.activation(xc.pre_activation(x))
    recon = xc.decode(feats)
    norms = xc.decoder_norms().cpu().numpy()
    rho = relative_norms(xc)
    frequency = (feats > 0).float().mean(dim=0).cpu().numpy()
    classes = [latent_class(r, f > 0) for r, f in zip(rho, frequency)]
    nu_error = np.full(len(rho), np.nan)
    nu_recon = np.full(len(rho), np.nan)
    for j in np.flatnonzero([c in ("parent_only", "child_only") for c in classes]):
        own = 0 if classes[j] == "parent_only" else 1
        nu_error[j], nu_recon[j] = _scaling_ratios(xc, x, recon, feats[:, j], int(j), own)
    return pa.table({
        "latent": pa.array(np.arange(len(rho)), pa.uint32()),
        "parent_norm": pa.array(norms[:, 0], pa.float32()), "child_norm": pa.array(norms[:, 1], pa.float32()),
        "relative_norm": pa.array(rho, pa.float32()), "frequency": pa.array(frequency, pa.float64()),
        "class": pa.array(classes),
        "nu_error": pa.array(nu_error, pa.float32(), from_pandas=True),
        "nu_recon": pa.array(nu_recon, pa.float32(), from_pandas=True),
        "artefact": pa.array(np.where(np.isnan(nu_error), None, (nu_error > ARTEFACT_NU) | (nu_recon > ARTEFACT_NU)),
                             pa.bool_()),
    })


def _scaling_ratios(xc: Crosscoder, x: torch.Tensor, recon: torch.Tensor, f: torch.Tensor, j: int, own: int) -> tuple[float, float]:
    """(ν_error, ν_recon) of latent j, exclusive to model `own`, by the β fits described above."""
    d = xc.W_dec[j, own]
    denominator = float(d.pow(2).sum() * f.pow(2).sum())
    if denominator <= 0:
        return float("nan"), float("nan")

    def beta(y: torch.Tensor) -> float:
        return float((f * (y @ d)).sum()) / denominator

    other = 1 - own
    mine = f[:, None] * xc.W_dec[j, other]
    present = beta(x[:, own] - xc.b_dec[own])  # how much of f_j·d the latent's own model holds (about 1)
    if abs(present) < 1e-6:
        return float("nan"), float("nan")
    error = x[:, other] - recon[:, other] + mine
    rest = recon[:, other] - xc.b_dec[other] - mine
    return beta(error) / present, beta(rest) / present


@torch.no_grad()
def quality(xc: Crosscoder, sample: torch.Tensor) -> dict:
    """Fraction of variance unexplained per model, mean active latents and dead fraction on `sample`."""
    x = xc.scaled(sample)
    feats = xc.activation(xc.pre_activation(x))
    error = (xc.decode(feats) - x).pow(2).sum(dim=(0, 2))
    variance = (x - x.mean(dim=0)).pow(2).sum(dim=(0, 2)).clamp_min(1e-12)
    fvu = (error / variance).tolist()
    return {"fvu_parent": round(fvu[0], 5), "fvu_child": round(fvu[1], 5),
            "l0": round(float((feats > 0).sum(dim=1).float().mean()), 3),
            "dead_fraction": round(float(((feats > 0).sum(dim=0) == 0).float().mean()), 4),
            "eval_tokens": len(sample)}
