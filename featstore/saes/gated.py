"""Gated SAEs (Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated SAEs"), loaded
from SAELens for inference: featstore encodes them as SAELens does but does not train them.

A gate decides which features fire, 1[(x - b_dec) @ W_enc + b_gate > 0]; a magnitude path that
shares W_enc, rescaled per feature by exp(r_mag), decides how strongly:
ReLU((x - b_dec) @ (W_enc * exp(r_mag)) + b_mag). There is no b_enc.
"""

from __future__ import annotations

import torch
from torch import nn

from featstore.saes.base import SAE


class GatedSAE(SAE):
    """f(x) = 1[gate pre-activation > 0] * ReLU(magnitude pre-activation)."""

    architecture = "gated"
    saelens_names = ("gated",)
    trainable = False

    def __init__(self, cfg):
        super().__init__(cfg)
        del self.b_enc
        self.b_gate = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(cfg.d_sae))
        self.r_mag = nn.Parameter(torch.zeros(cfg.d_sae))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.W_dec)
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.T)
        self.b_dec.zero_()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        centred = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        active = (centred @ self.W_enc + self.b_gate > 0).to(x.dtype)
        magnitude = torch.relu(centred @ (self.W_enc * self.r_mag.exp()) + self.b_mag)
        return active * magnitude

    @classmethod
    def tensor_shapes(cls, d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
        return {"W_enc": (d_in, d_sae), "W_dec": (d_sae, d_in), "b_dec": (d_in,),
                "b_gate": (d_sae,), "b_mag": (d_sae,), "r_mag": (d_sae,)}
