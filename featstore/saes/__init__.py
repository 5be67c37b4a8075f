"""Sparse autoencoders: one module per architecture (relu.py, topk.py, ...), registered by name in
`architectures.py`, saved in SAELens' file format (`base.py`, `saelens.py`) and read back by `folders.py`;
`training.py` trains them, `catalog.py` registers them in the warehouse."""

from featstore.saes.architectures import ARCHITECTURES, get_architecture
from featstore.saes.base import CONFIG_FILE, SAE, WEIGHTS_FILE, SAEConfig, save_sae
from featstore.saes.folders import load_sae, read_folder


def build_sae(architecture: str, **config) -> SAE:
    """A freshly initialised SAE, e.g. build_sae("topk", d_in=16, d_sae=64, k=5)."""
    cls = get_architecture(architecture)
    return cls(cls.config_class(**config))


__all__ = ["ARCHITECTURES", "CONFIG_FILE", "SAE", "SAEConfig", "WEIGHTS_FILE", "build_sae", "get_architecture",
           "load_sae", "read_folder", "save_sae"]
