"""Reading SAE folders (featstore's or SAELens'): the architecture named in cfg.json, every tensor's
shape checked before anything is loaded."""

from __future__ import annotations

from pathlib import Path

import torch

from featstore.errors import FeatstoreError
from featstore.models.hooks import hook_layer
from featstore.saes.architectures import architecture_from_saelens
from featstore.saes.base import CONFIG_FILE, SAE, WEIGHTS_FILE, SAEConfig
from featstore.saes.saelens import dtype_name, read_config


def read_folder(folder: str | Path) -> tuple[type[SAE], SAEConfig]:
    """(architecture class, config) of an SAE folder saved by featstore or SAELens, after checking
    every tensor's shape in the safetensors header and refusing tensors featstore would ignore
    (only small per-feature tensors are read, for the architecture's own checks)."""
    from safetensors import safe_open

    folder = Path(folder).expanduser()
    cfg_path, weights = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not weights.is_file():
        raise FeatstoreError(f"{folder} is not an SAE folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE} (SAELens layout)")
    cls, cfg = _config_from_json(cfg_path)
    try:
        with safe_open(str(weights), framework="pt") as fh:
            shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}
            expected = cls.tensor_shapes(cfg.d_in, cfg.d_sae)
            for name, shape in expected.items():
                if shapes.get(name) != shape:
                    raise FeatstoreError(f"{weights}: {name} has shape {shapes.get(name, 'missing')}, expected {shape} from {CONFIG_FILE}")
            for name in sorted(set(shapes) - set(expected)):
                _check_extra_tensor(weights, name, fh.get_tensor(name), cls.architecture)
            cls.check_saved_tensors(weights, fh.get_tensor)
    except FeatstoreError:
        raise
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise FeatstoreError(f"corrupt SAE weights {weights}: {str(exc).splitlines()[0]}") from exc
    return cls, cfg


def _check_extra_tensor(weights: Path, name: str, tensor: torch.Tensor, architecture: str) -> None:
    """SAELens' pre-6 saves may carry an all-ones `scaling_factor` (it drops it); any other tensor
    would change the encoding, or is not part of the architecture, and is refused."""
    if name == "scaling_factor" and bool((tensor == 1).all()):
        return
    raise FeatstoreError(f"{weights}: tensor {name!r} is not part of a {architecture} SAE as featstore encodes it; "
                         "refusing rather than ignoring it (fold it into the weights or save for inference)")


def load_sae(folder: str | Path, device: str | torch.device = "cpu") -> SAE:
    """Load an SAE saved by featstore or SAELens, checking every shape first."""
    from safetensors.torch import load_file

    cls, cfg = read_folder(folder)
    sae = cls(cfg).to(getattr(torch, cfg.dtype))
    sae.load_saelens_tensors(load_file(str(Path(folder).expanduser() / WEIGHTS_FILE)))
    return sae.to(device).eval()


def _config_from_json(path: Path) -> tuple[type[SAE], SAEConfig]:
    """Architecture and config of a cfg.json in either SAELens layout (see `featstore.saes.saelens`)."""
    raw = read_config(path)
    if not isinstance(raw["hook_name"], str):
        raise FeatstoreError(f"{path}: hook_name must be a string such as blocks.0.mlp.hook_post (got {raw['hook_name']!r})")
    for key in ("d_in", "d_sae", "hook_layer", "k", "seed"):
        if raw.get(key) is not None and (isinstance(raw[key], bool) or not isinstance(raw[key], int)):
            raise FeatstoreError(f"{path}: {key} must be an integer (got {raw[key]!r})")
    cls = architecture_from_saelens(raw["architecture"], path)
    layer = raw.get("hook_layer")
    return cls, cls.config_class(
        d_in=int(raw["d_in"]),
        d_sae=int(raw["d_sae"]),
        hook_name=raw["hook_name"],
        hook_layer=int(hook_layer(raw["hook_name"]) or 0 if layer is None else layer),
        model_name=raw.get("model_name"),
        seed=raw.get("seed"),
        training_tokens=raw.get("training_tokens"),
        apply_b_dec_to_input=raw.get("apply_b_dec_to_input", True) is not False,
        dtype=dtype_name(raw),
        extra=raw.get("featstore") or {},
        **cls.config_class.fields_from_saelens(raw),
    )
