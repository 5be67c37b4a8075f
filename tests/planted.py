"""A planted lineage: a parent and a child language model whose MLP hidden activations are built by hand.

Attention writes nothing (o_proj = 0) and the embeddings are one-hot, so the MLP hidden activation at a
token depends on the token alone and is exactly Σ magnitude·direction over the planted features that
fire on it. The child copies the parent's `shared` features (same direction, same tokens), lacks its
`parent_only` ones and adds `child_only` ones; which features fire on which token is the same table for
both, so a feature's class is the only difference between the models.

`planted_effects` plants what the features do instead: both models hold every feature, and the down
projection sends each one to a designed change of the next-token logits. A `true` feature promotes the
same token in both models, a `lookalike` fires on the same tokens in the same direction but promotes
another token in the child, an `inert` one does nothing in either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

CLASSES = ("shared", "parent_only", "child_only")
EFFECTS = ("true", "lookalike", "inert")
HEAD = 8.0  # logits are HEAD times the unit residual


@dataclass
class PlantedLineage:
    parent: torch.nn.Module
    child: torch.nn.Module
    directions: np.ndarray        # (n_features, d_mlp), unit rows
    truth: list[str]              # class of each planted feature
    firing: np.ndarray            # (vocab, n_features) magnitude of each feature on each token (0: silent)


def planted_lineage(counts: dict[str, int], *, d_mlp: int = 64, vocab: int = 512, per_token: int = 2,
                    seed: int = 0) -> PlantedLineage:
    rng = np.random.default_rng(seed)
    truth = [c for c in CLASSES for _ in range(counts.get(c, 0))]
    directions = rng.standard_normal((len(truth), d_mlp))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    firing = np.zeros((vocab, len(truth)))
    for token in range(vocab):
        firing[token, rng.choice(len(truth), size=per_token, replace=False)] = rng.uniform(1.0, 2.0, size=per_token)
    sides = {"parent": [c != "child_only" for c in truth], "child": [c != "parent_only" for c in truth]}
    hidden = {side: (firing * np.array(keep)) @ directions for side, keep in sides.items()}  # (vocab, d_mlp)
    return PlantedLineage(_model(hidden["parent"]), _model(hidden["child"]), directions, truth, firing)


@dataclass
class PlantedEffects:
    parent: torch.nn.Module
    child: torch.nn.Module
    directions: np.ndarray        # (n_features, d_mlp), unit rows, the same in both models
    truth: list[str]              # EFFECTS: what each feature does in the child compared with the parent
    magnitudes: np.ndarray        # (vocab, n_features) the feature's activation on each token (0: silent)


def planted_effects(counts: dict[str, int], *, d_mlp: int = 64, vocab: int = 256, per_token: int = 2, push: float = 2.0,
                    seed: int = 0) -> PlantedEffects:
    """Feature i adds `push` to the residual at token targets[i] (the child: child_targets[i]); the
    identity head makes that a logit change. Directions are independent, so the down projection is exact."""
    rng = np.random.default_rng(seed)
    truth = [c for c in EFFECTS for _ in range(counts.get(c, 0))]
    directions = np.linalg.qr(rng.standard_normal((d_mlp, len(truth))))[0].T  # orthonormal rows
    magnitudes = np.zeros((vocab, len(truth)))
    for token in range(vocab):
        magnitudes[token, rng.choice(len(truth), size=per_token, replace=False)] = rng.uniform(1.0, 2.0, size=per_token)
    targets = rng.choice(vocab, size=len(truth), replace=False)
    child_targets = np.array([rng.choice(np.setdiff1d(np.arange(vocab), [t])) if c == "lookalike" else t
                              for t, c in zip(targets, truth)])
    hidden = magnitudes @ directions
    models = []
    for aims in (targets, child_targets):
        effects = np.zeros((len(truth), vocab))  # residual written per unit of each feature
        effects[np.arange(len(truth)), aims] = push * np.array([c != "inert" for c in truth])
        models.append(_model(hidden, down=effects.T @ directions))  # down @ direction_i = effects[i]
    return PlantedEffects(models[0], models[1], directions, truth, magnitudes)


def _model(hidden: np.ndarray, down: np.ndarray | None = None) -> torch.nn.Module:
    """A one-layer Mistral whose MLP hidden activation on token t is hidden[t]; with `down` (vocab, d_mlp),
    its down projection, read by an identity head (logits ∝ the residual, one-hot embedding plus MLP output)."""
    from transformers import MistralConfig, MistralForCausalLM

    vocab, d_mlp = hidden.shape
    config = MistralConfig(vocab_size=vocab, hidden_size=vocab, intermediate_size=d_mlp, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                           sliding_window=None, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()
    layer = model.model.layers[0]
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(vocab))
        layer.self_attn.o_proj.weight.zero_()
        rms_scale = vocab ** 0.5            # RMSNorm of a one-hot vector: the one entry becomes √vocab
        layer.mlp.gate_proj.weight.fill_(0.5)  # every token: gate = 0.5·√vocab, SiLU of it a constant
        gate = torch.nn.functional.silu(torch.tensor(0.5 * rms_scale))
        layer.mlp.up_proj.weight.copy_(torch.as_tensor(hidden.T, dtype=torch.float32) / (rms_scale * gate))
        if down is not None:
            layer.mlp.down_proj.weight.copy_(torch.as_tensor(down, dtype=torch.float32))
            model.lm_head.weight.copy_(torch.eye(vocab) * HEAD / rms_scale)  # logits = HEAD · r / ‖r‖
    return model
