"""How a crosscoder is trained: the experiment file's [crosscoders.NAME] keys and the CLI's options
of `featstore crosscoder train` (from each field's help)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from featstore.errors import FeatstoreError
from featstore.models.presets import setting

SPARSITIES = ("batchtopk", "l1")


@dataclass(frozen=True)
class CrosscoderSettings:
    sparsity: str = setting("batchtopk", "batchtopk (k per token on average over a batch) or l1 (for comparison).",
                            choices="featstore.crosscoders.settings:SPARSITIES")
    expansion: int = setting(4, "Latents as a multiple of d_in.")
    k: int = setting(16, "BatchTopK: mean active latents per token.")
    l1_coefficient: float = setting(0.1, "L1: weight of the decoder-norm-weighted L1 penalty.")
    tokens: int = setting(200_000, "Training tokens (each read by both models).")
    batch_tokens: int = setting(512, "Tokens per optimiser step.")
    lr: float = setting(1e-3, "Adam learning rate.")
    block_len: int = setting(128, "Tokens per block of training text.")
    layer: int = setting(0, "Layer whose MLP hidden activation both models are read at.")
    eval_tokens: int = setting(20_000, "Held-out tokens that measure it and classify its latents.")
    seed: int = setting(0, "Seed of the initial weights, the text drawn and the batch order.")

    def __post_init__(self):
        if self.sparsity not in SPARSITIES:
            raise FeatstoreError(f"unknown crosscoder sparsity {self.sparsity!r}; use {' or '.join(SPARSITIES)}")
        if self.layer < 0:
            raise FeatstoreError(f"crosscoder layer must be at least 0 (got {self.layer})")
        for name in ("expansion", "k", "tokens", "batch_tokens", "block_len", "eval_tokens"):
            if getattr(self, name) < 1:
                raise FeatstoreError(f"crosscoder {name} must be at least 1 (got {getattr(self, name)})")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.l1_coefficient) and self.l1_coefficient > 0):
            raise FeatstoreError("crosscoder lr and l1_coefficient must be positive numbers")
