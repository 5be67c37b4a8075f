"""Match methods by name: the ways two SAEs' features are scored against each other.

The names, with their source and default threshold, are rows of the match_methods table
(sql/tables/301_match_methods.sql), which the SQL views read; this registry says what computes each.
Correlation statistics are computed by featstore.correlate and their runs are their evidence; the
other methods are computed by featstore.matching.evidence into match_runs / match_pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featstore.correlate import STATS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class MatchMethod:
    name: str
    source: str                                            # correlation | weights | activations
    vectors: Callable[[dict], "torch.Tensor"] | None = None  # weights: one row per feature from the SAE's tensors
    sql: str | None = None                                 # activations: table macro (sae_a, sae_b, corpus, floor)
    floor: float = 0.0                                     # pairs scoring at least this are kept as candidates


METHODS: dict[str, MatchMethod] = {
    **{stat: MatchMethod(stat, "correlation") for stat in STATS},
    "decoder_cosine": MatchMethod("decoder_cosine", "weights", vectors=lambda w: w["W_dec"], floor=0.5),
    "encoder_cosine": MatchMethod("encoder_cosine", "weights", vectors=lambda w: w["W_enc"].T, floor=0.5),
    "jaccard": MatchMethod("jaccard", "activations", sql="jaccard_pairs", floor=0.2),
}
COMPUTED = tuple(name for name, m in METHODS.items() if m.source != "correlation")  # what build_evidence computes
POLICIES = ("best", "mutual", "one_to_one")
