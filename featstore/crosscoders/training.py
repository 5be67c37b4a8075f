"""Train a crosscoder on two models' activations over the same token blocks.

Both models run on every batch of blocks; their hooked activations at each token are stacked into
(n, 2, d_in). Each model's activations are scaled once, from a first sample, to mean squared norm
d_in, so neither model dominates the loss by its scale alone (as the crosscoder papers do). The loss
is the summed squared error of both reconstructions over 2·d_in (about the fraction of variance left
unexplained) plus the L1 penalty of an L1 crosscoder, over √(2·d_in) so its coefficient is scale-free.
A BatchTopK crosscoder also has Gao et al.'s auxiliary loss: latents silent for DEAD_AFTER tokens
reconstruct the error with their own top-k_aux, so dead latents get a gradient and come back.
Decoders are not normalised: their norms per model are what classifies a latent.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from featstore.crosscoders.model import Crosscoder, CrosscoderConfig
from featstore.crosscoders.settings import CrosscoderSettings
from featstore.errors import FeatstoreError
from featstore.models.capture import batch_activations

DEAD_AFTER = 20_000  # tokens without firing after which a latent counts as dead (auxiliary loss)
AUX_WEIGHT = 1 / 32


@torch.no_grad()
def paired_activations(models: tuple, blocks: list[torch.Tensor], hook: str, device: torch.device) -> torch.Tensor:
    """(tokens, 2, d_in): both models' activations at `hook` on the same blocks, tokens in input order."""
    acts = [batch_activations(model, blocks, hook, device).float() for model in models]
    if acts[0].shape != acts[1].shape:
        raise FeatstoreError(f"the two models' activations at {hook} differ in width ({acts[0].shape[-1]} vs {acts[1].shape[-1]})")
    return torch.stack(acts, dim=1)


def paired_stream(models: tuple, blocks: np.ndarray, hook: str, device: torch.device, batch_tokens: int,
                  seed: int) -> Iterator[torch.Tensor]:
    """Endless (batch_tokens, 2, d_in) batches over reshuffled passes of `blocks`, tokens shuffled within a pass' window."""
    if blocks.size < batch_tokens:
        raise FeatstoreError(f"the training text holds {blocks.size:,} tokens, fewer than one batch ({batch_tokens:,}); "
                             "give more text or a smaller batch_tokens")
    rng = np.random.default_rng(seed)
    per_forward = max(1, 4 * batch_tokens // blocks.shape[1])
    while True:
        order = rng.permutation(len(blocks))
        for lo in range(0, len(order), per_forward):
            x = paired_activations(models, [torch.as_tensor(blocks[i]) for i in order[lo:lo + per_forward]], hook, device)
            x = x[torch.as_tensor(rng.permutation(len(x)), device=x.device)]
            yield from (x[i:i + batch_tokens] for i in range(0, len(x) - batch_tokens + 1, batch_tokens))


def activation_scales(sample: torch.Tensor) -> tuple[float, float]:
    """Per model, the factor that brings its mean squared norm to d_in."""
    if not bool(torch.isfinite(sample).all()):
        raise FeatstoreError("NaN or inf activations from a model at this hook; check its weights")
    mean_sq = sample.pow(2).sum(dim=-1).mean(dim=0)
    if not bool((mean_sq > 0).all()):
        raise FeatstoreError("one model's activations are all zero at this hook; a crosscoder cannot scale them")
    return tuple(float(s) for s in (sample.shape[-1] / mean_sq).sqrt())


def train_crosscoder(models: tuple, blocks: np.ndarray, *, hook: str, names: tuple[str, str], settings: CrosscoderSettings,
                     device: torch.device, progress: bool = True) -> Crosscoder:
    """Train a crosscoder on `models` (parent, child) over `blocks` of token ids; returns it in eval mode."""
    torch.manual_seed(settings.seed)
    stream = paired_stream(models, blocks, hook, device, settings.batch_tokens, settings.seed)
    first = next(stream)
    cfg = CrosscoderConfig(d_in=first.shape[-1], d_sae=first.shape[-1] * settings.expansion, models=names, hook_name=hook,
                           sparsity=settings.sparsity, k=settings.k if settings.sparsity == "batchtopk" else None,
                           l1_coefficient=settings.l1_coefficient if settings.sparsity == "l1" else None,
                           activation_scale=activation_scales(first), seed=settings.seed, training_tokens=settings.tokens)
    xc = Crosscoder(cfg).to(device)
    with torch.no_grad():
        xc.b_dec.copy_(xc.scaled(first).mean(dim=0))
    optimizer = torch.optim.Adam(xc.parameters(), lr=settings.lr)
    steps = max(1, settings.tokens // settings.batch_tokens)
    width = 2 * cfg.d_in
    start, log = time.perf_counter(), {}
    silent = torch.zeros(cfg.d_sae, dtype=torch.long, device=device)
    with tqdm(total=steps * settings.batch_tokens, unit="tok", unit_scale=True, disable=not progress,
              desc=f"crosscoder {names[0]} x {names[1]}") as bar:
        for step, x in zip(range(steps), itertools.chain([first], stream)):
            x = xc.scaled(x)
            pre = xc.pre_activation(x)
            feats = xc.activation(pre, training=True)
            recon = xc.decode(feats)
            mse = (recon - x).pow(2).sum(dim=(1, 2)).mean() / width
            silent = torch.where((feats > 0).any(dim=0), 0, silent + len(x))
            loss = mse + xc.sparsity_loss(feats) / math.sqrt(width) + AUX_WEIGHT * _aux_loss(xc, x, recon, pre, silent)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            xc.update_threshold(feats.detach())
            bar.update(len(x))
            if step % 50 == 0 or step == steps - 1:
                log = {"mse": round(float(mse.detach()), 5), "l0": round(float((feats > 0).sum(dim=1).float().mean()), 2)}
                bar.set_postfix(log)
    if not all(bool(torch.isfinite(t).all()) for t in xc.tensors().values()):
        raise FeatstoreError(f"crosscoder training diverged (NaN weights) at lr {settings.lr}; nothing was saved: lower --lr")
    cfg.extra.update({"settings": settings.__dict__, "train_seconds": round(time.perf_counter() - start, 2), "final": log})
    return xc.eval()


def _aux_loss(xc: Crosscoder, x: torch.Tensor, recon: torch.Tensor, pre: torch.Tensor, silent: torch.Tensor) -> torch.Tensor:
    """BatchTopK only: the error (x - x̂, held fixed) as reconstructed by the dead latents' top k_aux
    per token, relative to the error's own size."""
    dead = silent >= DEAD_AFTER
    if xc.cfg.sparsity != "batchtopk" or not bool(dead.any()):
        return x.new_zeros(())
    error = (x - recon).detach()
    k_aux = min(int(dead.sum()), xc.cfg.d_in // 2)
    values, indices = torch.relu(pre[:, dead]).topk(k_aux, dim=1)
    aux = torch.zeros_like(pre[:, dead]).scatter(1, indices, values)
    aux_recon = torch.einsum("nl,lmd->nmd", aux, xc.W_dec[dead])
    return (aux_recon - error).pow(2).sum() / error.pow(2).sum().clamp_min(1e-12)
