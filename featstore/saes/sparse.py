"""The sparse training step: after the dense encoder forward, work only on the (token, feature) pairs that matter.

A tiny SAE (512 -> 2,048 features) fires about 1 % of its features on a token, yet a dense step
multiplies by all of them five more times after the encoder forward: decoder forward, decoder weight
gradient, gradient into the features, encoder weight gradient and the gradient into b_dec. Here an
architecture names the pairs whose value can be non-zero or whose gradient can be (`Pairs`, token by
token), and two autograd functions touch only those: `decode` (features · W_dec, its gradients) and
`encoded` (the pre-activations at the pairs, whose backward is the encoder's weight gradient
xᵀ · g with g sparse). The kernels are numba loops on CPU (at the tiny shape, faster there than torch's
sparse matrix products, `embedding_bag` and nonzero), each over a range of tokens or features, on as
many threads as torch uses (Python threads around nogil kernels: numba's OpenMP layer would reset
torch's thread count). The math is the dense step's; only the order of summation differs.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, cached_property

import numpy as np
import torch
from numba import njit

# Above this share of pairs in play the sparse step hands over to the dense one (a ReLU SAE's random
# start fires about half its features). At the tiny shape on one CPU thread the sparse step is 5x as
# fast at 1 %, 2x at 10 % and even at 15 %, slower beyond.
DENSE_ABOVE = 0.1
ITEMS_PER_THREAD = 256  # tokens or features; fewer run on one thread


@dataclass(frozen=True)
class Pairs:
    """(token, feature) pairs, token by token: token t owns features[offsets[t]:offsets[t + 1]]."""

    offsets: torch.Tensor   # (n_tokens + 1,) int64
    features: torch.Tensor  # (n_pairs,) int64
    n_features: int

    @property
    def n_tokens(self) -> int:
        return len(self.offsets) - 1

    @property
    def density(self) -> float:
        return len(self.features) / max(1, self.n_tokens * self.n_features)

    def token_mean(self, values: torch.Tensor) -> torch.Tensor:
        """Σ over a token's pairs, averaged over tokens: feats.sum(-1).mean() of the dense step."""
        return values.sum() / self.n_tokens

    @cached_property
    def by_feature(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs feature by feature, tokens in order: feature f owns positions starts[f]:starts[f + 1]
        of (pair index, token). Kernels that walk this way read a feature's row of W once, and the
        token-side rows they gather (n_tokens x d_in) stay in cache."""
        offsets, features = _csr(self)
        starts, order, tokens = np.empty(self.n_features + 1, np.int64), np.empty_like(features), np.empty_like(features)
        _by_feature(offsets, features, starts, order, tokens)
        return starts, order, tokens


@dataclass(frozen=True)
class Activity:
    """What the trainer reads from a step's features: which fired (every step), and their mean L0 when it logs."""

    fired: torch.Tensor  # (d_sae,) bool
    feats: torch.Tensor  # the features, dense (n_tokens, d_sae) or at the step's pairs; never negative
    n_tokens: int

    @classmethod
    def of_dense(cls, feats: torch.Tensor) -> Activity:
        feats = feats.detach()
        return cls(feats.amax(dim=0) > 0, feats, len(feats))

    @classmethod
    def of_pairs(cls, pairs: Pairs, feats: torch.Tensor) -> Activity:
        feats = feats.detach()
        fired = torch.zeros(pairs.n_features, dtype=torch.bool, device=feats.device)
        return cls(fired.index_fill_(0, pairs.features[feats > 0], True), feats, pairs.n_tokens)

    def l0(self) -> torch.Tensor:
        """Mean active features per token, as a tensor (reading it back syncs the device)."""
        return torch.count_nonzero(self.feats) / self.n_tokens


# -- choosing the pairs ------------------------------------------------------------------------------


# Both take the pre-activations as `product` = (x - b_dec) · W_enc and `bias` = b_enc, adding the bias as
# they read: one pass over the (tokens, features) array fewer than adding it first, and the same float
# additions as the dense step's `product + b_enc`, so both steps see the same pre-activations.


def above(product: torch.Tensor, bias: torch.Tensor, floor: torch.Tensor) -> tuple[Pairs, torch.Tensor]:
    """(pairs, pre-activations) where the pre-activation product + bias > floor (one bias and floor per feature)."""
    product_np, bias_np, floor_np = _array(product), _array(bias), _array(floor)
    counts = np.empty(len(product_np), np.int64)
    _ranges(len(product_np), _count_above, product_np, bias_np, floor_np, counts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    features, values = np.empty(offsets[-1], np.int64), np.empty(offsets[-1], product_np.dtype)
    _ranges(len(product_np), _fill_above, product_np, bias_np, floor_np, offsets, features, values)
    return Pairs(torch.from_numpy(offsets), torch.from_numpy(features), product.shape[1]), torch.from_numpy(values)


def top_k(product: torch.Tensor, bias: torch.Tensor, k: int) -> tuple[Pairs, torch.Tensor]:
    """(pairs, pre-activations) of each token's k largest pre-activations, those > 0 only (the others are ReLU's zeros)."""
    product_np = _array(product)
    features, values = np.empty((len(product_np), k), np.int64), np.empty((len(product_np), k), product_np.dtype)
    _ranges(len(product_np), _top_k, product_np, _array(bias), features, values)
    features, values = torch.from_numpy(features), torch.from_numpy(values)
    positive = values > 0
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), positive.sum(dim=1).cumsum(0)])
    return Pairs(offsets, features[positive], product.shape[1]), values[positive]


# -- autograd ----------------------------------------------------------------------------------------


def decode(feats: torch.Tensor, pairs: Pairs, W_dec: torch.Tensor) -> torch.Tensor:
    """Σ over a token's pairs of feat · W_dec[feature]: (n_tokens, d_in), without b_dec."""
    return _Decode.apply(feats, W_dec, pairs)


def encoded(values: torch.Tensor, pairs: Pairs, centred: torch.Tensor, W_enc: torch.Tensor, b_enc: torch.Tensor,
            b_dec: torch.Tensor | None) -> torch.Tensor:
    """The pre-activations at the pairs (`values`, from the dense forward), with their gradient into the
    encoder: W_enc, b_enc and, when the input was centred on it (`b_dec` given), b_dec."""
    return _Encoded.apply(values, centred, W_enc, b_enc, b_dec, pairs)


class _Decode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, feats: torch.Tensor, W_dec: torch.Tensor, pairs: Pairs) -> torch.Tensor:
        ctx.save_for_backward(feats, W_dec)
        ctx.pairs = pairs
        W = _array(W_dec)
        out = np.zeros((pairs.n_tokens, W.shape[1]), W.dtype)
        _ranges(pairs.n_tokens, _decode, *_csr(pairs), _array(feats), W, out)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        feats, W_dec = ctx.saved_tensors
        pairs, grad = ctx.pairs, _array(grad)
        grad_feats = np.empty(len(pairs.features), grad.dtype)
        _ranges(pairs.n_features, _pair_dots, *pairs.by_feature, grad, _array(W_dec), grad_feats)
        return torch.from_numpy(grad_feats), _scatter(pairs, feats, grad), None


class _Encoded(torch.autograd.Function):
    @staticmethod
    def forward(ctx, values, centred, W_enc, b_enc, b_dec, pairs: Pairs) -> torch.Tensor:
        ctx.save_for_backward(centred, W_enc)
        ctx.pairs = pairs
        return values.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        centred, W_enc = ctx.saved_tensors
        pairs = ctx.pairs
        grad_W_enc = _scatter(pairs, grad, _array(centred)).T.contiguous()
        grad_b_enc = torch.zeros(pairs.n_features, dtype=grad.dtype).index_add_(0, pairs.features, grad)
        # centred = x - b_dec feeds every token, so b_dec's gradient is -Σ_t g_t · W_encᵀ = -W_enc · Σ_t g_t
        grad_b_dec = -(W_enc @ grad_b_enc) if ctx.needs_input_grad[4] else None
        return None, None, grad_W_enc, grad_b_enc, grad_b_dec, None


def _scatter(pairs: Pairs, values: torch.Tensor, A: np.ndarray) -> torch.Tensor:
    """(n_features, A's width): Σ over a feature's pairs of value · A[token]."""
    out = np.empty((pairs.n_features, A.shape[1]), A.dtype)
    _ranges(pairs.n_features, _scatter_range, *pairs.by_feature, _array(values), A, out)
    return torch.from_numpy(out)


# -- numba kernels, each over items [low, high) of one axis -------------------------------------------


def _ranges(n_items: int, kernel: Callable, *args) -> None:
    """kernel(*args, low, high) over up to torch.get_num_threads() contiguous ranges of n_items (at least
    ITEMS_PER_THREAD each: a smaller range costs more to hand over than it saves), in parallel: the
    first range in this thread, the others on the pool."""
    threads = max(1, min(torch.get_num_threads(), n_items // ITEMS_PER_THREAD))
    bounds = [n_items * i // threads for i in range(threads + 1)]
    others = [_pool().submit(kernel, *args, low, high) for low, high in zip(bounds[1:-1], bounds[2:])]
    kernel(*args, 0, bounds[1])
    for done in others:
        done.result()


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(thread_name_prefix="featstore-sparse")


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _csr(pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    return pairs.offsets.numpy(), pairs.features.numpy()


@njit(nogil=True, cache=True)
def _count_above(product, bias, floor, counts, low, high):
    for t in range(low, high):
        n = 0
        for f in range(product.shape[1]):
            if product[t, f] + bias[f] > floor[f]:
                n += 1
        counts[t] = n


@njit(nogil=True, cache=True)
def _fill_above(product, bias, floor, offsets, features, values, low, high):
    for t in range(low, high):
        j = offsets[t]
        for f in range(product.shape[1]):
            v = product[t, f] + bias[f]
            if v > floor[f]:
                features[j] = f
                values[j] = v
                j += 1


@njit(nogil=True, cache=True)
def _top_k(product, bias, features, values, low, high):
    """Each row's k largest pre-activations (unordered): a running set of k, replacing its minimum."""
    k = features.shape[1]
    for t in range(low, high):
        for j in range(k):
            features[t, j] = j
            values[t, j] = product[t, j] + bias[j]
        least = np.argmin(values[t])
        for f in range(k, product.shape[1]):
            v = product[t, f] + bias[f]
            if v > values[t, least]:
                features[t, least] = f
                values[t, least] = v
                least = np.argmin(values[t])


@njit(nogil=True, cache=True)
def _decode(offsets, features, feats, W, out, low, high):
    for t in range(low, high):
        for j in range(offsets[t], offsets[t + 1]):
            v = feats[j]
            f = features[j]
            for i in range(W.shape[1]):
                out[t, i] += v * W[f, i]


@njit(nogil=True, cache=True)
def _by_feature(offsets, features, starts, order, tokens):
    """Counting sort of token-major pairs by feature, stable: (starts, pair index, token) per feature."""
    starts[:] = 0
    for j in range(len(features)):
        starts[features[j] + 1] += 1
    for f in range(1, len(starts)):
        starts[f] += starts[f - 1]
    fill = starts[:-1].copy()
    for t in range(len(offsets) - 1):
        for j in range(offsets[t], offsets[t + 1]):
            k = fill[features[j]]
            order[k], tokens[k] = j, t
            fill[features[j]] = k + 1


@njit(nogil=True, cache=True, fastmath={"reassoc", "nsz", "contract"})
def _pair_dots(starts, order, tokens, A, W, out, low, high):
    """A[token] · W[feature] for every pair of the features in [low, high) (reassociated so the dot
    products vectorise)."""
    for f in range(low, high):
        for k in range(starts[f], starts[f + 1]):
            t = tokens[k]
            s = W.dtype.type(0)
            for i in range(W.shape[1]):
                s += A[t, i] * W[f, i]
            out[order[k]] = s


@njit(nogil=True, cache=True)
def _scatter_range(starts, order, tokens, values, A, out, low, high):
    """out[feature] = Σ value · A[token] for the features in [low, high), in token order: no two threads
    write one row, and each row sums alike whatever the thread count."""
    for f in range(low, high):
        out[f] = 0
        for k in range(starts[f], starts[f + 1]):
            v = values[order[k]]
            t = tokens[k]
            for i in range(A.shape[1]):
                out[f, i] += v * A[t, i]
