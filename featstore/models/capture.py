"""The one activation-capture hook: by default the MLP hidden activation, the input of the down
projection (for Mistral/Llama SiLU(gate(x)) * up(x), TransformerLens' `blocks.L.mlp.hook_post`), or
the residual stream after a layer (`blocks.L.hook_resid_post`); `featstore.models.layouts` finds both. SAE
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
from featstore.models.hf import resolve_device
from featstore.models.hooks import hook_name
from featstore.models.layouts import HookSite, hook_site


class _StopForward(Exception):
    """Raised from the hook once the activation is recorded, to skip the rest of the network."""


Hook = int | str  # a layer (its MLP hidden activation, blocks.L.mlp.hook_post) or a hook point name


def _site(model: nn.Module, hook: Hook) -> HookSite:
    return hook_site(model, hook_name(hook) if isinstance(hook, int) else hook)


def mlp_down_proj(model: nn.Module, layer: int) -> nn.Module:
    """The module whose input is the MLP hidden activation of `layer`."""
    return _site(model, layer).module


def _register(site: HookSite, fn: Callable[[torch.Tensor], torch.Tensor | None]):
    """Call `fn` on the site's activation; a tensor it returns replaces the activation."""
    if site.side == "input":
        def pre_hook(_module, args):
            new = fn(args[0])
            return None if new is None else (new,) + tuple(args[1:])

        return site.module.register_forward_pre_hook(pre_hook)

    def hook(_module, _args, output):
        value = output[0] if isinstance(output, tuple) else output
        new = fn(value)
        if new is None:
            return None
        return (new,) + tuple(output[1:]) if isinstance(output, tuple) else new

    return site.module.register_forward_hook(hook)


class Capture:
    """Holds the activation recorded by `capture_mlp_hidden`."""

    value: torch.Tensor | None = None


@contextmanager
def capture_mlp_hidden(model: nn.Module, layer: Hook, *, stop: bool = False) -> Iterator[Capture]:
    """Record the hooked activation on every forward; with `stop`, end the forward there.

    With `stop=True` the caller must call the model through `mlp_activations`.
    """
    captured = Capture()

    def record(value: torch.Tensor) -> None:
        captured.value = value.detach()
        if stop:
            raise _StopForward

    handle = _register(_site(model, layer), record)
    try:
        yield captured
    finally:
        handle.remove()


@contextmanager
def splice_mlp_hidden(model: nn.Module, layer: Hook, replace: Callable[[torch.Tensor], torch.Tensor]):
    """Replace the hooked activation by `replace(activation)`, e.g. an SAE reconstruction."""
    handle = _register(_site(model, layer), replace)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def mlp_activations(model: nn.Module, input_ids: torch.Tensor, layer: Hook) -> torch.Tensor:
    """(batch, seq, width) activation at `layer`'s hook, running the network only up to it."""
    with capture_mlp_hidden(model, layer, stop=True) as captured:
        try:
            model(input_ids=input_ids, use_cache=False)
        except _StopForward:
            pass
    if captured.value is None:
        raise FeatstoreError(f"the forward pass never reached hook {layer}")
    return captured.value.reshape(*input_ids.shape, captured.value.shape[-1])  # OPT flattens batch and sequence


def iter_mlp_activations(
    model: nn.Module,
    token_blocks: Iterable[np.ndarray | torch.Tensor],
    *,
    layer: Hook = 0,
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


def batch_activations(model: nn.Module, blocks: list[torch.Tensor], layer: Hook, device: torch.device) -> torch.Tensor:
    """(sum of block lengths, d_mlp) activations of one right-padded batch, tokens in input order."""
    lengths = [len(b) for b in blocks]
    padded = torch.nn.utils.rnn.pad_sequence(blocks, batch_first=True).to(device)
    acts = mlp_activations(model, padded, layer)
    if len(set(lengths)) == 1:
        return acts.reshape(-1, acts.shape[-1])
    return torch.cat([acts[i, :n] for i, n in enumerate(lengths)])
