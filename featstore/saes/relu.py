"""ReLU + L1, the "standard" SAE of SAELens and of the paper."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from featstore.saes.base import SAE, SAEConfig, hyperparameter
from featstore.saes.sparse import Pairs, above


@dataclass
class ReLUConfig(SAEConfig):
    l1_coefficient: float | None = hyperparameter(0.08, "L1 coefficient, on scale-normalised activations.", flag="--l1")


class ReLUSAE(SAE):
    """f(x) = ReLU(pre); the L1 norm of f(x) over the activations' scale is the sparsity loss."""

    architecture = "relu"
    saelens_names = ("standard", "relu")
    config_class = ReLUConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def sparsity_loss(self, pre: torch.Tensor, feats: torch.Tensor, scale: float) -> torch.Tensor:
        return self.cfg.l1_coefficient * feats.sum(dim=-1).mean() / math.sqrt(scale)

    def training_pairs(self, product: torch.Tensor, scale: float) -> tuple[Pairs, torch.Tensor]:
        """The positive pre-activations: ReLU's gradient is zero elsewhere."""
        return above(product, self.b_enc, torch.zeros_like(self.b_enc))

    def pair_activation(self, pre: torch.Tensor, pairs: Pairs, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.activation(pre)
        return feats, self.cfg.l1_coefficient * pairs.token_mean(feats) / math.sqrt(scale)
