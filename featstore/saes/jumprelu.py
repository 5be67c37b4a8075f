"""JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead"), the architecture of Gemma Scope.

f(x) = pre · 1[pre > θ] with a learned threshold θ per feature (θ > 0, so this is also SAELens'
ReLU(pre) · 1[pre > θ]). The step has no useful gradient, so training uses the paper's
straight-through estimators with a rectangle kernel K(u) = 1[|u| < 1/2] of bandwidth ε:
∂f/∂θ := -(θ/ε) K((pre - θ)/ε) and ∂1[pre > θ]/∂θ := -(1/ε) K((pre - θ)/ε), and the sparsity loss
is λ·L0 through the second. θ is trained as log θ. The bandwidth and the initial threshold are in
units of the activations' per-dimension RMS (the paper's normalisation, E‖x‖² = d_in), so their
defaults carry over between models; the saved `threshold` tensor is in the activations' own units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from featstore.errors import FeatstoreError
from featstore.saes.base import SAE, SAEConfig, hyperparameter
from featstore.saes.sparse import Activity, Pairs, above


@dataclass
class JumpReLUConfig(SAEConfig):
    l0_coefficient: float | None = hyperparameter(0.01, "L0 coefficient (lambda), on the scale-normalised loss.", flag="--l0")
    jumprelu_bandwidth: float | None = hyperparameter(0.05, "Bandwidth of the straight-through kernel, in RMS units.",
                                                      flag="--bandwidth")
    jumprelu_init_threshold: float | None = hyperparameter(0.5, "Initial threshold, in RMS units.", flag="--init-threshold")


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return (u.abs() < 0.5).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """pre · 1[pre > θ]; gradient 1[pre > θ] to pre, the kernel estimate to θ."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        kernel = _rectangle((pre - threshold) / ctx.bandwidth)
        grad_threshold = (-(threshold / ctx.bandwidth) * kernel * grad).reshape(-1, threshold.shape[0]).sum(dim=0)
        return grad * (pre > threshold), grad_threshold, None


class _Step(torch.autograd.Function):
    """1[pre > θ]; no gradient to pre, the kernel estimate to θ."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        kernel = _rectangle((pre - threshold) / ctx.bandwidth)
        return None, (-(1.0 / ctx.bandwidth) * kernel * grad).reshape(-1, threshold.shape[0]).sum(dim=0), None


class JumpReLUSAE(SAE):
    """A ReLU SAE whose features fire only above their own threshold; sparsity is an L0 penalty."""

    architecture = "jumprelu"
    saelens_names = ("jumprelu",)
    config_class = JumpReLUConfig

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """As the base, plus θ = jumprelu_init_threshold (absolute units until `initialize_from_data`)."""
        super().reset_parameters()
        self.log_threshold = nn.Parameter(torch.full((self.cfg.d_sae,), math.log(self.cfg.jumprelu_init_threshold or 1.0)))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre * (pre > self.threshold)

    # -- training -------------------------------------------------------------------------------

    @torch.no_grad()
    def initialize_from_data(self, sample: torch.Tensor) -> None:
        """θ starts at jumprelu_init_threshold RMS units of the sample's centred activations."""
        rms = (sample - self.b_dec).pow(2).mean().sqrt().clamp_min(1e-12)
        self.log_threshold.fill_(math.log(self.cfg.jumprelu_init_threshold * float(rms)))

    def bandwidth(self, scale: float) -> float:
        """ε in the activations' units (the setting is in RMS units)."""
        return self.cfg.jumprelu_bandwidth * math.sqrt(scale / self.cfg.d_in)

    def training_loss(self, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, Activity]:
        bandwidth = self.bandwidth(scale)
        pre = self.pre_activation(x)
        feats = _JumpReLU.apply(pre, self.threshold, bandwidth)
        mse = (self.decode(feats) - x).pow(2).sum(dim=-1).mean() / scale
        l0 = _Step.apply(pre, self.threshold, bandwidth).sum(dim=-1).mean()
        return mse + self.cfg.l0_coefficient * l0, mse, Activity.of_dense(feats)

    def training_pairs(self, product: torch.Tensor, scale: float) -> tuple[Pairs, torch.Tensor]:
        """Pre-activations above θ - ε: the active ones and those inside the kernel's window |pre - θ| < ε/2,
        which pass the straight-through gradient to θ (a margin of ε/2 more, so rounding cannot drop one)."""
        return above(product, self.b_enc, self.threshold - self.bandwidth(scale))

    def pair_activation(self, pre: torch.Tensor, pairs: Pairs, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        threshold, bandwidth = self.threshold[pairs.features], self.bandwidth(scale)
        feats = _JumpReLU.apply(pre, threshold, bandwidth)
        return feats, self.cfg.l0_coefficient * pairs.token_mean(_Step.apply(pre, threshold, bandwidth))

    @torch.no_grad()
    def reinitialize(self, dead: torch.Tensor, directions: torch.Tensor, enc_norm: torch.Tensor) -> list[tuple]:
        """As the base, and a resampled feature's threshold restarts at the live features' median."""
        alive = torch.ones_like(self.log_threshold, dtype=torch.bool)
        alive[dead] = False
        if alive.any():
            self.log_threshold[dead] = self.log_threshold[alive].median()
        return [*super().reinitialize(dead, directions, enc_norm), (self.log_threshold, (dead,))]

    # -- the SAELens format: the threshold itself, not its log ------------------------------------

    @classmethod
    def tensor_shapes(cls, d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
        return {**super().tensor_shapes(d_in, d_sae), "threshold": (d_sae,)}

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        tensors = super().saelens_tensors()
        tensors["threshold"] = tensors.pop("log_threshold").exp()
        return tensors

    @classmethod
    def check_saved_tensors(cls, weights, tensor) -> None:
        if not (tensor("threshold") > 0).all():
            raise FeatstoreError(f"{weights}: a JumpReLU SAE needs every threshold > 0; this file has zero or negative ones")

    def load_saelens_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        threshold = tensors["threshold"].to(self.W_enc.dtype)
        if not (threshold > 0).all():
            raise FeatstoreError("a JumpReLU SAE needs every threshold > 0; this file has zero or negative ones")
        state = {name: tensors[name].to(self.W_enc.dtype) for name in super().tensor_shapes(self.cfg.d_in, self.cfg.d_sae)}
        self.load_state_dict({**state, "log_threshold": threshold.log()})
