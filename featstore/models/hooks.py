"""Hook points, named once: featstore reads the MLP hidden activation of a decoder layer, the input
of its down projection, `blocks.L.mlp.hook_post` in TransformerLens/SAELens naming (and the residual
stream `blocks.L.hook_resid_post`). Where they are in a model, and how wide, is `featstore.models.layouts`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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


def check_hook(model: str, hook_point: str, layer: int, d_in: int, width: Callable[[], int]) -> None:
    """An SAE reading `hook_point` at `layer` with input width `d_in` fits a model whose hook is `width()` wide."""
    if hook_layer(hook_point) != layer:
        raise FeatstoreError(f"hook point {hook_point!r} does not name layer {layer}; use the form {hook_name(layer)}")
    wide = width()
    if d_in != wide:
        raise FeatstoreError(
            f"SAE d_in {d_in} does not match {hook_point} of model {model!r}, which is {wide} wide; "
            "register it on the model it was trained on"
        )
