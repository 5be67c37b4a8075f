"""SAELens' cfg.json, read in both its layouts and written in the current one.

SAELens >= 6 keeps the encoding fields at the top level (d_in, d_sae, dtype, architecture,
apply_b_dec_to_input, normalize_activations, reshape_activations, an architecture's own such as
TopK's k and rescale_acts_by_decoder_norm) and what the SAE was trained on under `metadata`
(hook_name, model_name, hook_head_index, sae_lens_version, ...). Older saves are flat and name some
fields differently (hook_point, activation_fn_str, activation_fn_kwargs.k); SAELens tells the two
apart by sae_lens_version, and so does featstore.

Every field that changes what `encode` returns is either implemented or refused when the folder is
read (so at `featstore sae add`), naming the field and its value: ENCODING_FIELDS lists them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from featstore.errors import FeatstoreError

# The SAELens release whose layout featstore writes (>= 6.0, so SAELens reads it as current).
SAELENS_LAYOUT_VERSION = "6.54.12"
# Older field names, as SAELens' own pre-6 loader renames them.
PRE6_RENAMES = {"hook_point": "hook_name", "hook_point_head_index": "hook_head_index", "activation_fn_str": "activation_fn"}
METADATA_KEYS = ("model_name", "hook_name", "hook_head_index", "hook_layer", "prepend_bos", "context_size",
                 "model_from_pretrained_kwargs", "seqpos_slice", "exclude_special_tokens", "neuronpedia_id",
                 "dataset_path", "sae_lens_version", "sae_lens_training_version")
DTYPES = ("float32", "float64", "float16", "bfloat16")
ARCHITECTURES = ("standard", "topk", "jumprelu", "gated")

# field -> (the values featstore encodes exactly as SAELens does, why others are refused)
ENCODING_FIELDS: dict[str, tuple[tuple, str]] = {
    "architecture": (ARCHITECTURES + ("relu",),
                     "featstore encodes standard, topk, jumprelu and gated SAEs (BatchTopK: save it with "
                     "save_inference_model, which writes a jumprelu SAE)"),
    "activation_fn": (("relu", "topk", None), "a pre-6 save must use relu or topk"),
    "normalize_activations": (("none", None, False),
                              "fold the normalisation into the weights first (SAELens' fold_activation_norm_scaling_factor)"),
    "reshape_activations": (("none", None), "featstore captures MLP and residual activations, not per-head hook_z"),
    "hook_head_index": ((None,), "featstore reads whole hook points, not one attention head"),
    "finetuning_scaling_factor": ((False, None), "fold the scaling factor into W_dec first"),
    "dtype": (DTYPES + tuple(f"torch.{d}" for d in DTYPES) + (None,), f"use one of {', '.join(DTYPES)}"),
    "apply_b_dec_to_input": ((True, False, None), "it must be true or false"),
    "rescale_acts_by_decoder_norm": ((True, False, None), "it must be true or false"),
}
# Fields an architecture implements; elsewhere only their default is accepted.
ARCHITECTURE_FIELDS = {"rescale_acts_by_decoder_norm": ("topk",)}


def is_current_layout(raw: dict) -> bool:
    """Does this cfg.json follow SAELens >= 6 (per its sae_lens_version, as SAELens decides)?"""
    version = raw.get("sae_lens_version") or (raw.get("metadata") or {}).get("sae_lens_version")
    if not version:
        return False
    try:
        return int(str(version).split(".")[0]) >= 6
    except ValueError:
        return False


def flatten(raw: dict) -> dict:
    """One flat dict from either layout: metadata merged in, pre-6 names renamed, TopK's k found."""
    if is_current_layout(raw):
        flat = {**{k: v for k, v in raw.items() if k != "metadata"}}
        for key, value in (raw.get("metadata") or {}).items():
            flat.setdefault(key, value)
        return flat
    flat = {PRE6_RENAMES.get(k, k): v for k, v in raw.items()}
    for key, value in (raw.get("metadata") or {}).items():  # a hand-edited or partial layout
        flat.setdefault(key, value)
    if flat.get("normalize_activations") is True:
        flat["normalize_activations"] = "expected_average_only_in"
    k = (flat.get("activation_fn_kwargs") or {}).get("k")
    if flat.get("activation_fn") == "topk":
        flat.setdefault("architecture", "topk")
        if flat.get("k") is None:
            flat["k"] = k
    flat.setdefault("architecture", "standard")
    return flat


def read_config(path: str | Path) -> dict:
    """cfg.json as one flat dict, after refusing every encoding field featstore does not implement."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FeatstoreError(f"{path} is not valid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict):
        raise FeatstoreError(f"{path} is not an SAE config (a JSON object with d_in, d_sae and hook_name)")
    flat = flatten(raw)
    missing = [key for key in ("d_in", "d_sae", "hook_name") if flat.get(key) is None]
    if missing:
        raise FeatstoreError(f"{path} lacks {', '.join(missing)}; an SAE config needs d_in, d_sae and hook_name "
                             "(SAELens 6 keeps hook_name under metadata)")
    check_encoding_fields(flat, path)
    return flat


def check_encoding_fields(flat: dict, path: str | Path) -> None:
    """Refuse, by field and value, what would make featstore's encode differ from SAELens'."""
    for name, (allowed, why) in ENCODING_FIELDS.items():
        value = flat.get(name)
        if not _allowed(value, allowed):
            raise FeatstoreError(f"{path}: {name}={value!r} is not supported; {why}")
    architecture = flat.get("architecture")
    for name, architectures in ARCHITECTURE_FIELDS.items():
        if flat.get(name) and architecture not in architectures:
            raise FeatstoreError(
                f"{path}: {name}={flat[name]!r} is not supported for architecture {architecture!r} (only {', '.join(architectures)})"
            )


def _allowed(value: Any, allowed: tuple) -> bool:
    # `True in (1,)` is true in Python; compare booleans by identity so 1/0 are not taken for them.
    return any(value is a if isinstance(a, bool) or a is None else (value == a and not isinstance(value, bool))
               for a in allowed)


def dtype_name(flat: dict) -> str:
    return str(flat.get("dtype") or "float32").removeprefix("torch.")


def current_layout(fields: dict, metadata: dict) -> dict:
    """A cfg.json in SAELens' current layout: `fields` at the top, `metadata` nested (with the
    layout's version), and the hook and model also at the top for readers of the flat layout."""
    meta = {"sae_lens_version": SAELENS_LAYOUT_VERSION, "sae_lens_training_version": None, **metadata}
    flat_copies = {key: meta[key] for key in ("hook_name", "hook_layer", "model_name") if key in meta}
    return {**fields, **flat_copies, "metadata": meta}
