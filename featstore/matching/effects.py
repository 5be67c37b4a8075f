"""Causal effects of matched SAE features: ablate a feature in its model's forward and compare what that
does in the parent and in the child, token by token (Feature Flow's test, asked of a match).

Ablating feature p of an SAE at its hook replaces the activation h by h − f_p(h)·W_dec[p]: the SAE's
reconstruction without p plus the reconstruction error, so nothing but the feature changes. For a matched
pair (p of the parent's SAE, c of the child's) both models read the same block of tokens, the parent with
p ablated, the child with c ablated. At every position where p fires in the parent or c fires in the child
(and a next token exists) three things are measured:

- the change in next-token loss, ablated − clean (positive: the feature helped predict the text);
- KL(P_clean ‖ P_ablated) of the next-token distribution: the feature's effect whatever the text;
- the cosine of the two models' changes in log-probability over the vocabulary, in the geometry KL
  measures (the Fisher metric of the next-token distribution): each token weighted by its clean
  probability (the mean of the two models'), each change centred under those weights (logits are
  defined up to a constant), so tokens neither model would predict do not count. Pooled over the
  positions (the cosine of the two whole effects, so a position weighs as much as the features act
  there), it is the pair's score `effect_cosine`: near 1 when the two features do the same thing, 0 when
  one does nothing where the other acts, negative when they push opposite ways.

Per feature, the mean loss change and KL where it fires are its own effect size, so a matched feature
that does nothing is visible. Each pair reads at most `pair_blocks` blocks, those where either fires.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from featstore.models.capture import (
    capture_mlp_hidden,
    mlp_activations,
    splice_mlp_hidden,
)
from featstore.saes.base import SAE

QUIET = 1e-4  # a change in log-probabilities smaller than this (Fisher norm, about √(2·KL)) is no effect
STEADY = 1e-5  # loss changes spread less than this (nats, standard deviation) have no correlation
SCORES = 1 << 25  # log-probabilities held per ablated forward: rows × block length × vocabulary
SUMS = ("n", "ab", "aa", "bb", "x", "y", "xx", "yy", "xy", "n_a", "loss_a", "kl_a", "n_b", "loss_b", "kl_b")
COLUMNS = ("tokens", "tokens_a", "tokens_b", "effect_cosine", "loss_correlation", "loss_change_a", "loss_change_b",
           "kl_a", "kl_b")


@torch.no_grad()
def pair_effects(models: tuple, saes: tuple[SAE, SAE], hooks: tuple[str, str], blocks: np.ndarray, pairs: np.ndarray,
                 *, pair_blocks: int = 8, batch_rows: int = 8, device: torch.device, progress: bool = False) -> pa.Table:
    """One row per pair of `pairs` (n, 2: feature of the first SAE, of the second) with the COLUMNS above,
    measured on `blocks` (n_blocks, block_len); the means are null where a pair has no position to read."""
    sums = np.zeros((len(pairs), len(SUMS)))
    jobs = _jobs(models, saes, hooks, blocks, pairs, pair_blocks, device)
    vocab = _vocab(models[0])
    rows = max(1, min(batch_rows, SCORES // (blocks.shape[1] * vocab)))
    with tqdm(total=sum(len(j) for j in jobs.values()), unit="pair-block", disable=not progress, desc="causal") as bar:
        for block, chosen in sorted(jobs.items()):
            ids = torch.as_tensor(blocks[block], device=device)
            clean = [_clean(m, s, h, ids) for m, s, h in zip(models, saes, hooks)]
            for start in range(0, len(chosen), rows):
                chunk = np.array(chosen[start:start + rows])
                sides = [_side(m, s, h, ids, c, torch.as_tensor(pairs[chunk, i], device=device))
                         for i, (m, s, h, c) in enumerate(zip(models, saes, hooks, clean))]
                np.add.at(sums, chunk, _position_sums(ids, *sides))
                bar.update(len(chunk))
    return _table(pairs, sums)


def _vocab(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def _jobs(models, saes, hooks, blocks: np.ndarray, pairs: np.ndarray, pair_blocks: int, device) -> dict[int, list[int]]:
    """{block: the pairs that read it}: each pair's first `pair_blocks` blocks where either feature fires."""
    active = np.zeros((len(blocks), len(pairs)), dtype=bool)
    for side, (model, sae, hook) in enumerate(zip(models, saes, hooks)):
        features = torch.as_tensor(pairs[:, side], device=device)
        for start in range(0, len(blocks), 8):
            hidden = mlp_activations(model, torch.as_tensor(blocks[start:start + 8], device=device), hook)
            fired = _encode(sae, hidden)[..., features] > 0
            active[start:start + len(hidden)] |= fired.any(dim=1).cpu().numpy()
    jobs: dict[int, list[int]] = defaultdict(list)
    for pair in range(len(pairs)):
        for block in np.flatnonzero(active[:, pair])[:pair_blocks]:
            jobs[int(block)].append(pair)
    return jobs


def _encode(sae: SAE, hidden: torch.Tensor) -> torch.Tensor:
    """The SAE's features of (..., d_in) activations, shaped (..., d_sae)."""
    return sae.encode(hidden.reshape(-1, hidden.shape[-1]).float()).reshape(*hidden.shape[:-1], -1)


def _clean(model, sae: SAE, hook: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities (L, V), SAE features (L, d_sae)) of one block without ablation."""
    with capture_mlp_hidden(model, hook) as captured:
        logits = model(input_ids=ids[None], use_cache=False).logits[0]
    return logits.float().log_softmax(dim=-1), _encode(sae, captured.value.reshape(len(ids), -1))


def _side(model, sae: SAE, hook: str, ids: torch.Tensor, clean: tuple, features: torch.Tensor) -> tuple:
    """(change in log-probabilities (R, L, V), clean log-probabilities, where each row's feature fires (R, L))
    for R copies of the block, row r with `features[r]` ablated."""
    log_p, feats = clean
    return _ablated(model, sae, hook, ids, features) - log_p, log_p, feats[:, features].T > 0


def _ablated(model, sae: SAE, hook: str, ids: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """(R, L, V) log-probabilities of R copies of the block, copy r with feature `features[r]` removed."""
    rows = len(features)
    directions = sae.W_dec[features]  # (R, d_in)

    def remove(hidden: torch.Tensor) -> torch.Tensor:
        shaped = hidden.reshape(rows, -1, hidden.shape[-1])
        own = _encode(sae, shaped).gather(-1, features.view(rows, 1, 1).expand(rows, shaped.shape[1], 1))
        return (shaped - (own * directions[:, None, :]).to(hidden.dtype)).reshape(hidden.shape)

    with splice_mlp_hidden(model, hook, remove):
        logits = model(input_ids=ids.expand(rows, -1), use_cache=False).logits
    return logits.float().log_softmax(dim=-1)


def _position_sums(ids: torch.Tensor, side_a: tuple, side_b: tuple) -> np.ndarray:
    """Per row, the SUMS over the positions (with a next token) where either row's feature fires."""
    losses, kls, centred, fires = [], [], [], []
    weights = (side_a[1][:-1].exp() + side_b[1][:-1].exp()) / 2  # (L - 1, V), each row sums to 1
    for delta, log_p, fired in (side_a, side_b):
        delta = delta[:, :-1]
        losses.append(-delta.gather(-1, ids[1:].view(1, -1, 1).expand(len(delta), -1, 1)).squeeze(-1))
        kls.append(-(log_p[:-1].exp() * delta).sum(dim=-1))
        centred.append(delta - (weights * delta).sum(dim=-1, keepdim=True))
        fires.append(fired[:, :-1].float())
    products = [(weights * u * v).sum(dim=-1) for u, v in ((centred[0], centred[1]), (centred[0], centred[0]),
                                                            (centred[1], centred[1]))]
    either = torch.maximum(*fires)
    x, y = losses
    columns = [either, *(p * either for p in products), x * either, y * either, x * x * either, y * y * either, x * y * either,
               fires[0], x * fires[0], kls[0] * fires[0], fires[1], y * fires[1], kls[1] * fires[1]]
    return torch.stack([c.double().sum(dim=-1) for c in columns], dim=1).cpu().numpy()


def _table(pairs: np.ndarray, sums: np.ndarray) -> pa.Table:
    s = dict(zip(SUMS, sums.T))
    with np.errstate(invalid="ignore", divide="ignore"):
        n = s["n"]
        cov = s["xy"] / n - s["x"] * s["y"] / n ** 2
        spread = [np.sqrt(np.maximum(s[sq] / n - (s[m] / n) ** 2, 0)) for sq, m in (("xx", "x"), ("yy", "y"))]
        moving = (spread[0] > STEADY) & (spread[1] > STEADY)
        quiet = (s["aa"] < QUIET ** 2 * n) | (s["bb"] < QUIET ** 2 * n)
        cosine = np.where(quiet, 0.0, s["ab"] / np.sqrt(s["aa"] * s["bb"]))
        means = {"effect_cosine": np.where(n > 0, cosine, np.nan),
                 "loss_correlation": np.where(moving, cov / (spread[0] * spread[1]), np.nan).clip(-1, 1),
                 "loss_change_a": s["loss_a"] / s["n_a"], "loss_change_b": s["loss_b"] / s["n_b"],
                 "kl_a": np.maximum(s["kl_a"] / s["n_a"], 0), "kl_b": np.maximum(s["kl_b"] / s["n_b"], 0)}
    counts = {"tokens": n, "tokens_a": s["n_a"], "tokens_b": s["n_b"]}
    columns = {"feature_a": pa.array(pairs[:, 0], pa.uint32()), "feature_b": pa.array(pairs[:, 1], pa.uint32())}
    columns |= {k: pa.array(np.rint(v).astype(np.int64)) for k, v in counts.items()}
    columns |= {k: pa.array(v, pa.float64(), mask=~np.isfinite(v)) for k, v in means.items()}
    return pa.table(columns)
