"""Where featstore's hook points live in a Hugging Face decoder, found from its module structure.

No table of model families: the decoder layers are the model's ModuleList with one block per
layer (`config.num_hidden_layers` of them, all of one class), and a layer's MLP down projection is
the one linear map outside attention that writes the residual stream (its output is hidden_size
wide, its input the MLP's hidden width). That covers Llama/Mistral/Qwen/Gemma/OLMo (`mlp.down_proj`),
Phi (`mlp.fc2`), Phi-3, GPT-2 (`mlp.c_proj`, a Conv1D), GPT-NeoX/Pythia and Falcon
(`mlp.dense_4h_to_h`), GPT-J (`mlp.fc_out`) and OPT (`fc2`, directly in the layer).

Hook points, in TransformerLens/SAELens naming:
  blocks.L.mlp.hook_post    the input of layer L's down projection (the MLP hidden activation)
  blocks.L.hook_resid_post  the output of decoder layer L (the residual stream after it)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from featstore.errors import FeatstoreError
from featstore.models.hooks import HOOK_POINT

HOOK_KINDS = {"mlp.hook_post": "input", "hook_resid_post": "output"}
SUPPORTED = ", ".join(f"blocks.L.{kind}" for kind in HOOK_KINDS)


@dataclass(frozen=True)
class HookSite:
    """The module a hook point reads and whether it is that module's input or its output."""

    module: nn.Module
    side: str  # "input" | "output"
    width: int


def parse_hook(hook_point: str) -> tuple[int, str]:
    """(layer, kind) of `blocks.L.<kind>`; refuses hook points featstore cannot capture."""
    match = HOOK_POINT.match(hook_point)
    if match is None or match.group(2) not in HOOK_KINDS:
        raise FeatstoreError(f"hook point {hook_point!r} is not supported; featstore captures {SUPPORTED}")
    return int(match.group(1)), match.group(2)


def hidden_size(model: nn.Module) -> int:
    return int(model.config.get_text_config().hidden_size)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ModuleList holding one decoder block per layer."""
    n_layers = model.config.get_text_config().num_hidden_layers
    for _name, module in model.named_modules():
        if (isinstance(module, nn.ModuleList) and len(module) == n_layers
                and len({type(block) for block in module}) == 1 and any(True for _ in module[0].parameters())):
            return module
    raise FeatstoreError(
        f"cannot find the {n_layers} decoder layers of {type(model).__name__}: no ModuleList of {n_layers} identical blocks"
    )


def decoder_layers_name(model: nn.Module) -> tuple[str, int]:
    """(dotted name of the decoder layer list, number of layers), e.g. ("model.layers", 32)."""
    layers = decoder_layers(model)
    return next(name for name, module in model.named_modules() if module is layers), len(layers)


def _width(module: nn.Module) -> tuple[int, int] | None:
    """(in, out) of a linear map: nn.Linear and its subclasses, or GPT-2's Conv1D (weight stored (in, out))."""
    weight = getattr(module, "weight", None)
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and weight is not None and weight.dim() == 2:
        return tuple(weight.shape)
    return None


def _in_attention(name: str, block: nn.Module) -> bool:
    """Is the submodule `name` of `block` part of the attention (by its own or an ancestor's name or class)?"""
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):
        prefix = ".".join(parts[:depth])
        label = (parts[depth - 1] + type(block.get_submodule(prefix)).__name__).lower()
        if "attn" in label or "attention" in label:
            return True
    return False


def mlp_down_proj(model: nn.Module, layer: int) -> nn.Module:
    """The module whose input is layer `layer`'s MLP hidden activation."""
    layers = decoder_layers(model)
    if not 0 <= layer < len(layers):
        raise FeatstoreError(f"layer {layer} does not exist; the model has {len(layers)} layer(s)")
    block, hidden = layers[layer], hidden_size(model)
    candidates = [(name, module, dims) for name, module in block.named_modules()
                  if (dims := _width(module)) is not None and dims[1] == hidden and not _in_attention(name, block)]
    if len(candidates) > 1:  # an MLP wider than the model is told apart from other maps into the stream
        candidates = [c for c in candidates if c[2][0] != hidden] or candidates
    if len(candidates) != 1:
        found = ", ".join(name for name, _, _ in candidates) or "none"
        raise FeatstoreError(
            f"cannot find the MLP down projection of layer {layer} in {type(model).__name__}: "
            f"expected one linear map outside attention into the {hidden}-wide stream, found {found}"
        )
    return candidates[0][1]


def hook_site(model: nn.Module, hook_point: str) -> HookSite:
    """Where `hook_point` is read in `model`."""
    layer, kind = parse_hook(hook_point)
    if kind == "hook_resid_post":
        layers = decoder_layers(model)
        if not 0 <= layer < len(layers):
            raise FeatstoreError(f"layer {layer} does not exist; the model has {len(layers)} layer(s)")
        return HookSite(layers[layer], "output", hidden_size(model))
    proj = mlp_down_proj(model, layer)
    return HookSite(proj, "input", _width(proj)[0])


def skeleton(path: str | Path) -> nn.Module:
    """The model built from its config on the meta device: its module structure, no weights read."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except (OSError, ValueError, KeyError) as exc:
        raise FeatstoreError(f"cannot build model {str(path)!r} from its config: {str(exc).splitlines()[0]}") from exc


def check_model_hooks(path: str | Path) -> dict[str, int]:
    """Refuse a model whose layer-0 hook points cannot be found; their widths by hook kind."""
    model = skeleton(path)
    try:
        return {kind: hook_site(model, f"blocks.0.{kind}").width for kind in HOOK_KINDS}
    except FeatstoreError as exc:
        raise FeatstoreError(f"{exc}; featstore supports causal LMs with {SUPPORTED}") from None


def hook_width(path: str | Path, hook_point: str) -> int:
    """Width of `hook_point` in the model at `path`, from its structure."""
    return hook_site(skeleton(path), hook_point).width
