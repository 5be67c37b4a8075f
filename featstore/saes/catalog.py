"""The SAE catalog: registering SAEs of registered models, from training or from SAELens folders.

Registration checks what later stages rely on: an SAE's input width is the width of the hook it
reads, its weights are finite, a seed replica matches its original's shape.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.models import hooks
from featstore.models.catalog import get_model, safetensors_tensors
from featstore.warehouse import Warehouse, check_name, remove_files

# -- SAEs ---------------------------------------------------------------------------------------


def register_sae(
    wh: Warehouse,
    sae_id: str,
    model: str,
    path: str | Path | None,
    *,
    hook_point: str,
    layer: int,
    d_in: int,
    d_sae: int,
    architecture: str,
    l1_coeff: float | None = None,
    k: int | None = None,
    seed: int | None = None,
    train_tokens: int | None = None,
    metrics: dict | None = None,
    is_primary: bool = True,
    seed_of: str | None = None,
    init_from: str | None = None,
    drift: pa.Table | None = None,
    replace: bool = False,
) -> dict:
    """Register an SAE of `model`. Its d_in must be the width of `hook_point` in the model's config.

    Replacing an SAE drops everything computed from the old weights (`featstore.warehouse.tables.Saes.drop`).
    A primary SAE (the one that stands for its model in persistence) demotes the others.
    A seed replica (`seed_of`: an SAE of the same model and shape it differs from only by seed) is
    never primary. A lineage-initialised SAE (`init_from`: the trained SAE it started from) comes with
    the `drift` of its features from their initial vectors (featstore.saes.training.feature_drift).
    """
    from featstore.saes import get_architecture

    check_name("SAE", sae_id)
    cls = get_architecture(architecture)
    architecture = cls.architecture
    if d_in <= 0 or d_sae <= 0:
        raise FeatstoreError(f"SAE {sae_id!r}: d_in and d_sae must be positive (got {d_in}, {d_sae})")
    cls.check_registration(sae_id, k=k, l1_coeff=l1_coeff)
    location = wh.relative(path) if path is not None else None
    model_row = get_model(wh, model)
    check_hook(model_row, hook_point, layer, d_in)
    if seed_of is not None:
        _check_seed_of(get_sae(wh, seed_of), sae_id, model, hook_point, d_in, d_sae, architecture, seed, is_primary)
    record = {"id": sae_id, "model": model, "hook_point": hook_point, "layer": layer, "d_in": d_in, "d_sae": d_sae,
              "architecture": architecture, "l1_coeff": l1_coeff, "k": k, "seed": seed, "train_tokens": train_tokens,
              "path": location, "is_primary": is_primary, "metrics": metrics, "seed_of": seed_of, "init_from": init_from}
    with wh.transaction() as con:
        stale = wh.saes.replace(con, record, replace=replace)
        if drift is not None:
            wh.saes.add_drift(con, sae_id, drift)
    remove_files(stale)
    return get_sae(wh, sae_id)


def _check_seed_of(original: dict, sae_id: str, model: str, hook_point: str, d_in: int, d_sae: int,
                   architecture: str, seed: int | None, is_primary: bool) -> None:
    """A seed replica must be comparable to its original in everything but the seed."""
    mine = {"model": model, "hook_point": hook_point, "d_in": d_in, "d_sae": d_sae, "architecture": architecture}
    differ = [k for k, v in mine.items() if original[k] != v]
    if differ:
        raise FeatstoreError(f"SAE {sae_id!r} cannot be a seed replica of {original['id']!r}: its {', '.join(differ)} differ")
    if seed is not None and seed == original["seed"]:
        raise FeatstoreError(f"SAE {sae_id!r} has the seed of {original['id']!r} ({seed}); a seed replica needs another seed")
    if is_primary:
        raise FeatstoreError(f"SAE {sae_id!r} is a seed replica of {original['id']!r}, so it cannot be primary")


def check_hook(model: dict, hook_point: str, layer: int, d_in: int) -> None:
    """An SAE of `model` reading `hook_point` at `layer` must be as wide as that hook (from the module structure)."""
    from featstore.models.layouts import hook_width

    hooks.check_hook(model["name"], hook_point, layer, d_in, lambda: hook_width(model["path"], hook_point))


def sae_folder_config(folder: str | Path) -> dict:
    """Read an SAELens-style folder (cfg.json + sae_weights.safetensors), checking the weight shapes
    in the safetensors header (no tensor is read). Returns register_sae's keyword args."""
    from featstore.saes import read_folder

    weights = Path(folder).expanduser() / "sae_weights.safetensors"
    if weights.is_file():  # truncated or cut-short files first, then the config and shapes, then the values
        safetensors_tensors(weights)
    cls, cfg = read_folder(folder)
    _check_finite(weights, [k for k, meta in safetensors_tensors(weights).items() if meta.get("dtype") in ("F16", "F32", "F64")])
    return {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "hook_point": cfg.hook_name,
        "layer": cfg.hook_layer,
        "architecture": cls.architecture,
        "l1_coeff": getattr(cfg, "l1_coefficient", None),
        "k": getattr(cfg, "k", None),
        "seed": cfg.seed,
        "train_tokens": cfg.training_tokens,
    }


def _check_finite(weights: Path, keys: list[str]) -> None:
    """NaN or inf weights would make every ingest fail later; refuse them at registration."""
    import numpy as np
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="numpy") as fh:
            bad = [key for key in keys if not np.isfinite(fh.get_tensor(key)).all()]
    except Exception as exc:  # safetensors raises its own error types
        raise FeatstoreError(f"cannot read {weights}: {exc}") from exc
    if bad:
        raise FeatstoreError(f"{weights}: {', '.join(bad)} hold NaN or infinite values; retrain or fix the SAE before registering it")


def add_sae_folder(
    wh: Warehouse, sae_id: str, model: str, folder: str | Path, *, is_primary: bool = True, replace: bool = False
) -> dict:
    """Register an existing SAE folder (SAELens naming) of a registered model."""
    return register_sae(wh, sae_id, model, folder, **sae_folder_config(folder), is_primary=is_primary, replace=replace)


def update_sae_metrics(wh: Warehouse, sae_id: str, metrics: dict) -> dict:
    """Merge `metrics` into the SAE's metrics."""
    wh.saes.merge_metrics(sae_id, metrics)
    return get_sae(wh, sae_id)


def get_sae(wh: Warehouse, sae_id: str) -> dict:
    return wh.saes.get(sae_id)


def primary_sae(wh: Warehouse, model: str) -> dict:
    """The SAE that stands for `model` (the last one registered as primary)."""
    get_model(wh, model)
    return wh.saes.primary(model)


def list_saes(wh: Warehouse) -> pa.Table:
    return wh.saes.list()
