"""Activation examples per feature, drawn in SQL (macro `feature_samples`, sql/interpretability/) and stored.

Explainers see one half of a feature's firing tokens (odd activation ranks); simulators are scored
on the other half plus tokens where the feature does not fire, so a score measures how well an
explanation generalises rather than how well it recalls what it was shown. Drawing is
seeded and stored once per (SAE, corpus, feature), so every backend and every rerun works on the
same examples and a score is reproducible from the tables alone. The functions take a connection
from `Warehouse.connect()` / `transaction()`, so a caller can do its reads in one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import duckdb

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse
from featstore.warehouse.queries import run

SHOWN_KINDS = ("top", "quantile", "random", "top_token")  # what an explainer sees
SCORED_KINDS = ("heldout_top", "heldout_random", "zero")  # what a simulation is scored on


@dataclass(frozen=True)
class Sample:
    """One token occurrence of a feature's examples, with its context."""

    tok: int
    kind: str
    act: float
    bin: int
    before: str
    token: str
    after: str


def require_activations(wh: Warehouse, con: duckdb.DuckDBPyConnection, sae: str, corpus: str) -> None:
    """FeatstoreError unless (sae, corpus) has a committed activation partition."""
    wh.partitions.get(sae, corpus, con=con)


def default_corpus(wh: Warehouse, con: duckdb.DuckDBPyConnection, sae: str) -> str:
    """The one corpus an SAE has activations on; FeatstoreError when it is not exactly one."""
    corpora = wh.partitions.corpora_of(sae, con=con)
    if len(corpora) == 1:
        return corpora[0]
    if not corpora:
        raise FeatstoreError(f"no activations for SAE {sae!r}; run `featstore ingest` first")
    raise FeatstoreError(f"SAE {sae!r} has activations on several corpora ({', '.join(corpora)}); pass --corpus")


def select_features(
    wh: Warehouse, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, *, features: list[int] | None = None,
    top: int | None = None,
) -> list[int]:
    """The features to work on: those given (each must fire), else the `top` most frequent, else all that fire."""
    require_activations(wh, con, sae, corpus)
    if features is not None:
        if top is not None:
            raise FeatstoreError("give either features or top, not both")
        firing = {r[0] for r in run(con, "explanations/firing", sae=sae, corpus=corpus, features=list(features)).fetchall()}
        silent = [f for f in features if f not in firing]
        if silent:
            raise FeatstoreError(
                f"feature(s) {', '.join(map(str, silent))} of SAE {sae!r} never fire on corpus {corpus!r}; nothing to explain"
            )
        return sorted(set(features))
    if top is not None and top < 1:
        raise FeatstoreError(f"--top must be at least 1, got {top}")
    rows = run(con, "explanations/most_frequent", sae=sae, corpus=corpus, top=top if top is not None else 2**62).fetchall()
    return sorted(r[0] for r in rows)


def sample_features(wh: Warehouse, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, features: list[int], *, seed: int = 0) -> int:
    """Draw and store examples for the features that have none yet; returns how many were drawn.

    Features already sampled keep their examples (whatever seed drew them), so explanations and
    scores made from them stay valid. Run it inside `Warehouse.transaction()`.
    """
    require_activations(wh, con, sae, corpus)
    explanations = wh.explanations
    done = explanations.sampled(con, sae, corpus, features)
    todo = [f for f in features if f not in done]
    if todo:
        explanations.draw_samples(con, sae, corpus, todo, seed)
    return len(todo)


def load_samples(wh: Warehouse, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, features: list[int]) -> dict[int, list[Sample]]:
    """Stored examples of each feature, shown kinds first, top first; features without examples are absent."""
    rows = wh.explanations.samples(con, sae, corpus, features, [*SHOWN_KINDS, *SCORED_KINDS])
    samples: dict[int, list[Sample]] = defaultdict(list)
    for feature, *fields in rows:
        samples[feature].append(Sample(*fields))
    return dict(samples)
