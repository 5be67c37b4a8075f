"""The SAE architectures featstore trains and loads, by name (as SAELens' `sae_lens/registry.py`).

To add one: write `featstore/saes/<name>.py` (a config dataclass and an `SAE` subclass), import it
here and list it in ARCHITECTURES. `saes.architecture` references the `sae_architectures` lookup
table, so a name it lacks also needs its row there: a new `sql/tables/NNN_sae_architectures.sql`
with `INSERT OR IGNORE`, as `210_sae_architectures.sql` adds gated.
"""

from __future__ import annotations

from pathlib import Path

from featstore.errors import FeatstoreError
from featstore.saes.base import SAE, SAEConfig
from featstore.saes.gated import GatedSAE
from featstore.saes.jumprelu import JumpReLUSAE
from featstore.saes.relu import ReLUSAE
from featstore.saes.topk import TopKSAE

ARCHITECTURES: dict[str, type[SAE]] = {cls.architecture: cls for cls in (ReLUSAE, TopKSAE, JumpReLUSAE)}
# Loaded from SAELens and encoded, not trained by featstore.
INFERENCE_ONLY: dict[str, type[SAE]] = {cls.architecture: cls for cls in (GatedSAE,)}
LOADABLE = {**ARCHITECTURES, **INFERENCE_ONLY}


def get_architecture(name: str) -> type[SAE]:
    """The class of an architecture named by featstore (relu) or by SAELens (standard)."""
    for cls in LOADABLE.values():
        if name == cls.architecture or name in cls.saelens_names:
            return cls
    raise FeatstoreError(f"unknown SAE architecture {name!r}; use one of {', '.join(LOADABLE)}")


def sae_class(cfg: SAEConfig) -> type[SAE]:
    """The architecture whose config `cfg` is."""
    return next(cls for cls in LOADABLE.values() if type(cfg) is cls.config_class)


def architecture_from_saelens(name: str, path: Path) -> type[SAE]:
    """As `get_architecture`, for a cfg.json: the error names the file."""
    try:
        return get_architecture(name)
    except FeatstoreError:
        raise FeatstoreError(
            f"{path}: SAE architecture {name!r} is not supported; featstore loads {', '.join(LOADABLE)}"
        ) from None
