"""The one activation-capture hook: the MLP hidden activation, i.e. the input of the down projection.

For Mistral/Llama this is SiLU(gate(x)) * up(x), TransformerLens' `blocks.L.mlp.hook_post` (named in
`featstore.hooks`). SAE
training, evaluation and ingest all read activations through this module, so they see exactly the
same numbers. The forward pass is cut short after the hooked layer (the vocabulary head dominates
the cost of a small model) by raising a private exception from the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from featstore.errors import FeatstoreError
from featstore.hf import resolve_device


class _StopForward(Exception):
    """Raised from the hook once the activation is recorded, to skip the rest of the network."""


def _layers(model: nn.Module):
    """The decoder layer list of a Llama/Mistral, GPT-NeoX or GPT-2 style causal LM."""
    for path in ("model.layers", "gpt_neox.layers", "transformer.h"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise FeatstoreError(
        f"cannot find the decoder layers of {type(model).__name__}; supported: Mistral/Llama, GPT-NeoX, GPT-2 style models"
    )


def mlp_down_proj(model: nn.Module, layer: int) -> nn.Module:
    """The module whose input is the MLP hidden activation of `layer`."""
    layers = _layers(model)
    if not 0 <= layer < len(layers):
        raise FeatstoreError(f"layer {layer} does not exist; the model has {len(layers)} layer(s)")
    mlp = layers[layer].mlp
    for name in ("down_proj", "dense_4h_to_h", "c_proj"):
        if hasattr(mlp, name):
            return getattr(mlp, name)
    raise FeatstoreError(f"cannot find the MLP down projection of layer {layer} in {type(model).__name__}")


class Capture:
    """Holds the activation recorded by `capture_mlp_hidden`."""

    value: torch.Tensor | None = None


@contextmanager
def capture_mlp_hidden(model: nn.Module, layer: int, *, stop: bool = False) -> Iterator[Capture]:
    """Record the down projection's input on every forward; with `stop`, end the forward there.

    With `stop=True` the caller must call the model through `forward_until_captured`.
    """
    captured = Capture()

    def hook(_module, args):
        captured.value = args[0].detach()
        if stop:
            raise _StopForward

    handle = mlp_down_proj(model, layer).register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


@contextmanager
def splice_mlp_hidden(model: nn.Module, layer: int, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Replace the down projection's input by `replace(activation)`, e.g. an SAE reconstruction."""

    def hook(_module, args):
        return (replace(args[0]),) + tuple(args[1:])

    handle = mlp_down_proj(model, layer).register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def mlp_activations(model: nn.Module, input_ids: torch.Tensor, layer: int) -> torch.Tensor:
    """(batch, seq, d_mlp) hidden activation of `layer`, running the network only up to it."""
    with capture_mlp_hidden(model, layer, stop=True) as captured:
        try:
            model(input_ids=input_ids, use_cache=False)
        except _StopForward:
            pass
    if captured.value is None:
        raise FeatstoreError(f"the forward pass never reached the MLP of layer {layer}")
    return captured.value


def iter_mlp_activations(
    model: nn.Module,
    token_blocks: Iterable[np.ndarray | torch.Tensor],
    *,
    layer: int = 0,
    batch_size: int = 16,
    device: str | torch.device | None = None,
) -> Iterator[torch.Tensor]:
    """Stream activations: one (n_tokens, d_mlp) tensor per batch of token blocks, tokens in input order.

    Blocks may differ in length; a batch is right-padded, which cannot change the real tokens'
    activations in a causal model.
    """
    device = resolve_device(device)
    batch: list[torch.Tensor] = []
    for block in token_blocks:
        batch.append(torch.as_tensor(np.asarray(block, dtype=np.int64)))
        if len(batch) == batch_size:
            yield batch_activations(model, batch, layer, device)
            batch = []
    if batch:
        yield batch_activations(model, batch, layer, device)


def batch_activations(model: nn.Module, blocks: list[torch.Tensor], layer: int, device: torch.device) -> torch.Tensor:
    """(sum of block lengths, d_mlp) activations of one right-padded batch, tokens in input order."""
    lengths = [len(b) for b in blocks]
    padded = torch.nn.utils.rnn.pad_sequence(blocks, batch_first=True).to(device)
    acts = mlp_activations(model, padded, layer)
    if len(set(lengths)) == 1:
        return acts.reshape(-1, acts.shape[-1])
    return torch.cat([acts[i, :n] for i, n in enumerate(lengths)])
