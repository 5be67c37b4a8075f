"""Sparse autoencoders, one module per architecture (relu.py, topk.py, ...), registered by name in
`registry.py`, all in SAELens' file format (`base.py`)."""

from featstore.saes.base import CONFIG_FILE, SAE, WEIGHTS_FILE, SAEConfig, load_sae, read_folder, save_sae
from featstore.saes.registry import ARCHITECTURES, get_architecture


def build_sae(architecture: str, **config) -> SAE:
    """A freshly initialised SAE, e.g. build_sae("topk", d_in=16, d_sae=64, k=5)."""
    cls = get_architecture(architecture)
    return cls(cls.config_class(**config))


__all__ = ["ARCHITECTURES", "CONFIG_FILE", "SAE", "SAEConfig", "WEIGHTS_FILE", "build_sae", "get_architecture",
           "load_sae", "read_folder", "save_sae"]
