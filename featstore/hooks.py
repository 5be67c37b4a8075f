"""Hook points, named once: featstore reads the MLP hidden activation of a decoder layer, the input
of its down projection, `blocks.L.mlp.hook_post` in TransformerLens/SAELens naming. Widths come
from the model's config.json, so registration can check an SAE without loading the model (or torch).
"""

from __future__ import annotations

import re

from featstore.errors import FeatstoreError

MLP_HIDDEN = "mlp.hook_post"
HOOK_POINT = re.compile(r"^blocks\.(\d+)\.(.+)$")


def hook_name(layer: int) -> str:
    """TransformerLens/SAELens name of the activation featstore captures at `layer`."""
    return f"blocks.{layer}.{MLP_HIDDEN}"


def hook_layer(hook_point: str) -> int | None:
    """The layer a hook point names (`blocks.3.…` -> 3), or None."""
    match = HOOK_POINT.match(hook_point)
    return int(match.group(1)) if match else None


def hook_width(config: dict, hook_point: str) -> int:
    """Width of a hook point from an HF config: the MLP hidden size for hook_post, else the model width."""
    mlp = config.get("intermediate_size") or config.get("n_inner") or (4 * config["n_embd"] if "n_embd" in config else None)
    hidden = config.get("hidden_size") or config.get("n_embd")
    width = mlp if hook_point.endswith(MLP_HIDDEN) else hidden
    if width is None:
        raise FeatstoreError(f"cannot tell the width of {hook_point!r} from the model's config.json")
    return int(width)


def check_hook(config: dict, model: str, hook_point: str, layer: int, d_in: int) -> None:
    """An SAE reading `hook_point` at `layer` with input width `d_in` fits the model with this config."""
    if hook_layer(hook_point) != layer:
        raise FeatstoreError(f"hook point {hook_point!r} does not name layer {layer}; use the form {hook_name(layer)}")
    n_layers = config.get("num_hidden_layers") or config.get("n_layer")
    if n_layers is not None and not 0 <= layer < n_layers:
        raise FeatstoreError(f"model {model!r} has {n_layers} layer(s); layer {layer} does not exist")
    width = hook_width(config, hook_point)
    if d_in != width:
        raise FeatstoreError(
            f"SAE d_in {d_in} does not match {hook_point} of model {model!r}, which is {width} wide; "
            "register it on the model it was trained on"
        )
