"""Match methods by name: the ways two SAEs' features are scored against each other (the evidence).

The names, with their source and default threshold, are rows of the match_methods table
(sql/tables/301_match_methods.sql), which the SQL views read; this registry says what computes each.
Every correlation statistic of featstore.correlation.statistics is a method, computed by featstore.correlation.correlate (its
runs are its evidence); the others are computed by featstore.matching.evidence into match_runs /
match_pairs, except the causal check, which runs the models (featstore.matching.causal). How a match is then chosen from the evidence is a policy (best, mutual, one_to_one):
featstore.correlation.statistics' `best_match` is the `best` policy of a correlation run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from featstore.correlation.statistics import STATISTICS

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class EvidenceMethod:
    name: str
    source: str                                            # correlation | weights | activations | crosscoder | causal
    vectors: Callable[[dict], torch.Tensor] | None = None  # weights: one row per feature from the SAE's tensors
    sql: str | None = None                                 # activations: table macro (sae_a, sae_b, corpus, floor)
    floor: float = 0.0                                     # pairs scoring at least this are kept as candidates


METHODS: dict[str, EvidenceMethod] = {
    **{stat: EvidenceMethod(stat, "correlation") for stat in STATISTICS},
    "decoder_cosine": EvidenceMethod("decoder_cosine", "weights", vectors=lambda w: w["W_dec"], floor=0.5),
    "encoder_cosine": EvidenceMethod("encoder_cosine", "weights", vectors=lambda w: w["W_enc"].T, floor=0.5),
    "jaccard": EvidenceMethod("jaccard", "activations", sql="jaccard_pairs", floor=0.2),
    # needs a crosscoder of the two SAEs' models (featstore.matching.crosscoder); computed when one exists
    "crosscoder": EvidenceMethod("crosscoder", "crosscoder"),
    # ablates matched pairs in the two models (featstore.matching.causal, `featstore causal`); every checked pair kept
    "causal": EvidenceMethod("causal", "causal", floor=-1.0),
}
COMPUTED = tuple(name for name, m in METHODS.items() if m.source not in ("correlation", "causal"))  # what build_evidence computes
DATA_FREE = ("weights", "crosscoder")  # sources whose runs have no corpus (the "weights" slice)
POLICIES = ("best", "mutual", "one_to_one")
