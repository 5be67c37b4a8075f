"""Crosscoders: one dictionary trained jointly on two models' activations at the same tokens, whose
latents are shared, parent-only or child-only by their decoder norms (docs/crosscoders.md).
`model.py` is the crosscoder and its folder format, `training.py` trains it, `latents.py` classifies
its latents, `catalog.py` registers it in the warehouse and ingests its activations."""

from featstore.crosscoders.model import (
    Crosscoder,
    CrosscoderConfig,
    load_crosscoder,
    save_crosscoder,
)
from featstore.crosscoders.settings import SPARSITIES, CrosscoderSettings

__all__ = ["SPARSITIES", "Crosscoder", "CrosscoderConfig", "CrosscoderSettings", "load_crosscoder", "save_crosscoder"]
