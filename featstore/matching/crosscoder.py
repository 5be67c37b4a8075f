"""The crosscoder match method: a parent SAE feature and a child SAE feature match when both align with
one shared latent of the crosscoder trained for their two models (featstore.crosscoders).

Each feature's decoder vector is compared by cosine with the crosscoder's decoder vectors for its own
model; a feature is represented by its best latent. When that latent is shared, the feature is paired
with the other SAE's feature that the latent aligns with best, scored by the smaller of the two cosines.
A feature whose best latent is exclusive to its model, intermediate or dead gets no pair: by the
crosscoder it does not persist. Data-free, like the weight cosines (corpus NULL).
"""

from __future__ import annotations

import numpy as np
import torch

from featstore.matching.cosine import cosine_candidates


def best_partners(ia: np.ndarray, ib: np.ndarray, score: np.ndarray) -> tuple[dict[int, tuple[int, float]], dict[int, tuple[int, float]]]:
    """From candidate pairs holding each row's top partner on both sides: {a: (best b, cosine)}, {b: (best a, cosine)}."""
    best_of_a: dict[int, tuple[int, float]] = {}
    best_of_b: dict[int, tuple[int, float]] = {}
    for a, b, s in zip(ia.tolist(), ib.tolist(), score.tolist()):
        if a not in best_of_a or s > best_of_a[a][1]:
            best_of_a[a] = (b, s)
        if b not in best_of_b or s > best_of_b[b][1]:
            best_of_b[b] = (a, s)
    return best_of_a, best_of_b


def crosscoder_pairs(dec_a: torch.Tensor, dec_b: torch.Tensor, latents_a: torch.Tensor, latents_b: torch.Tensor,
                     shared: np.ndarray, device: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature of a, feature of b, score) pairs: `dec_*` are the SAEs' decoder rows, `latents_*` the
    crosscoder's decoder rows for the same model, `shared` a boolean per latent."""
    sides = []
    for dec, latents in ((dec_a, latents_a), (dec_b, latents_b)):
        sides.append(best_partners(*cosine_candidates(dec, latents, top_k=1, floor=2.0, device=device)))
    (latent_of_a, a_of_latent), (latent_of_b, b_of_latent) = sides
    found: dict[tuple[int, int], float] = {}

    def route(features: dict, others: dict, flip: bool) -> None:
        for feature, (latent, cos) in features.items():
            if shared[latent] and latent in others:
                other, other_cos = others[latent]
                key = (other, feature) if flip else (feature, other)
                found[key] = max(found.get(key, -1.0), min(cos, other_cos))

    route(latent_of_a, b_of_latent, flip=False)
    route(latent_of_b, a_of_latent, flip=True)
    keys = np.array(list(found), dtype=np.uint32).reshape(-1, 2)
    return keys[:, 0], keys[:, 1], np.array(list(found.values()), dtype=np.float32)
