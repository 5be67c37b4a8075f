"""Exact cosine matching between two sets of feature vectors, in blocks, in torch (CPU or CUDA).

The full F_a x F_b similarity matrix is never held: side a is cut into row blocks of at most
BLOCK_ELEMENTS scores, each block's similarities are reduced at once to (1) every feature of a's
top-k partners, (2) a running top-k per feature of b, and (3) every pair scoring at least the floor.
Scores are exact (one float32 matmul per block), not approximate nearest neighbours.
"""

from __future__ import annotations

import numpy as np
import torch

from featstore.errors import FeatstoreError
from featstore.models.hf import resolve_device

BLOCK_ELEMENTS = 1 << 24  # scores per block: 64 MB of float32, e.g. 1,024 rows x 16,384 features


@torch.no_grad()
def cosine_candidates(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    top_k: int = 5,
    floor: float = 0.5,
    device: str | None = None,
    block_elements: int = BLOCK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate pairs (index in a, index in b, cosine) between the rows of `a` and of `b`.

    Keeps each row's top_k partners on the other side (both directions) plus every pair with
    cosine >= floor, each pair once. Rows of zero norm score 0 against everything.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise FeatstoreError(f"cosine matching needs vectors of one width; got {tuple(a.shape)} and {tuple(b.shape)}")
    if top_k < 1:
        raise FeatstoreError(f"top_k must be at least 1 (got {top_k})")
    device = resolve_device(device)
    a = torch.nn.functional.normalize(a.to(device, torch.float32), dim=1)
    b = torch.nn.functional.normalize(b.to(device, torch.float32), dim=1)
    n_a, n_b = len(a), len(b)
    k_a, k_b = min(top_k, n_b), min(top_k, n_a)
    rows = max(1, block_elements // max(1, n_b))
    best_b = torch.full((k_b, n_b), -2.0, device=device)  # running top-k of each b feature over a
    best_b_idx = torch.zeros((k_b, n_b), dtype=torch.long, device=device)
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for lo in range(0, n_a, rows):
        scores = a[lo:lo + rows] @ b.T
        values, cols = scores.topk(k_a, dim=1)
        found.append((torch.arange(lo, lo + len(scores), device=device).repeat_interleave(k_a), cols.flatten(), values.flatten()))
        r, c = (scores >= floor).nonzero(as_tuple=True)
        found.append((r + lo, c, scores[r, c]))
        block_v, block_i = scores.topk(min(k_b, len(scores)), dim=0)
        merged_v, order = torch.cat([best_b, block_v]).topk(k_b, dim=0)
        best_b, best_b_idx = merged_v, torch.cat([best_b_idx, block_i + lo]).gather(0, order)
    found.append((best_b_idx.flatten(), torch.arange(n_b, device=device).repeat(k_b), best_b.flatten()))
    ia, ib, score = (torch.cat(parts).cpu().numpy() for parts in zip(*found))
    _, first = np.unique(ia.astype(np.int64) * n_b + ib, return_index=True)
    return ia[first].astype(np.uint32), ib[first].astype(np.uint32), score[first].astype(np.float32)
