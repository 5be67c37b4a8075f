"""TopK: exactly k features per token (Gao et al. 2024); sparsity needs no loss term.

With SAELens' `rescale_acts_by_decoder_norm` the top k are chosen on pre-activations times each
feature's decoder norm, and decoding divides by that norm again, as if the decoder were unit-norm.
featstore trains with unit-norm decoders, where both are no-ops; SAELens-trained SAEs need them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from featstore.errors import FeatstoreError
from featstore.saes.base import SAE, SAEConfig, hyperparameter
from featstore.saes.sparse import Pairs, top_k


@dataclass
class TopKConfig(SAEConfig):
    k: int | None = hyperparameter(None, "Active features per token.", kind=int)
    rescale_acts_by_decoder_norm: bool = False

    def __post_init__(self):
        if not (self.k and 0 < self.k <= self.d_sae):
            raise FeatstoreError(f"a TopK SAE needs 0 < k <= d_sae ({self.d_sae}); got k={self.k}")

    @classmethod
    def fields_from_saelens(cls, raw: dict) -> dict:
        k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
        return {"k": int(k) if k else None, "rescale_acts_by_decoder_norm": bool(raw.get("rescale_acts_by_decoder_norm"))}

    def saelens_fields(self) -> dict:
        return {**super().saelens_fields(), "rescale_acts_by_decoder_norm": self.rescale_acts_by_decoder_norm}


class TopKSAE(SAE):
    """f(x) = ReLU of the k largest pre-activations, zero elsewhere."""

    architecture = "topk"
    saelens_names = ("topk",)
    config_class = TopKConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            pre = pre * self.W_dec.norm(dim=-1)
        values, indices = pre.topk(self.cfg.k, dim=-1, sorted=False)
        return torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            feats = feats / self.W_dec.norm(dim=-1)
        return super().decode(feats)

    def training_pairs(self, product: torch.Tensor, scale: float) -> tuple[Pairs, torch.Tensor]:
        """Each token's k largest positive pre-activations (featstore trains without the rescale)."""
        if self.cfg.rescale_acts_by_decoder_norm:
            raise FeatstoreError("the sparse training step trains TopK without rescale_acts_by_decoder_norm; use the dense one")
        return top_k(product, self.b_enc, self.cfg.k)

    def pair_activation(self, pre: torch.Tensor, pairs: Pairs, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(pre), pre.new_zeros(())

    @classmethod
    def check_registration(cls, sae_id: str, k: int | None = None, **_catalog) -> None:
        if not k:
            raise FeatstoreError(f"SAE {sae_id!r} is top-k but has no k")
