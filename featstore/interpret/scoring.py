"""Explain and score features, resumably: every step lands in a table (explanation_samples, explanations, simulations, scores).

A run skips what is already stored (explanations per explainer and prompt version, scores per
explanation and simulator), calls backends from a thread pool, and commits finished features in
batches: each feature's rows are written in one transaction, so a feature whose calls fail leaves
nothing behind, and a rerun picks up exactly the features that are missing. LLM replies are cached
by request hash as they arrive, so a rerun after a crash pays only for calls it has not made.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from featstore.errors import FeatstoreError
from featstore.interpret.backends import Backend, BuiltinBackend
from featstore.interpret.sampling import (
    SCORED_KINDS,
    SHOWN_KINDS,
    Sample,
    default_corpus,
    load_samples,
    sample_features,
    select_features,
)
from featstore.warehouse import Warehouse
from featstore.warehouse.queries import run as run_query

COMMIT_EVERY_SECONDS = 2.0
COMMIT_EVERY_FEATURES = 64


class WarehouseCache:
    """The llm_cache table: workers read it; replies wait in memory until the next commit."""

    def __init__(self, wh: Warehouse, lock: threading.Lock):
        self.wh = wh
        self.lock = lock
        self.pending: list[tuple] = []

    def get(self, keys: list[str]) -> dict[str, tuple[dict, int, int]]:
        with self.lock, self.wh.connect() as con:
            rows = self.wh.llm_cache.lookup(con, keys)
        return {key: (json.loads(result), p, c) for key, result, p, c in rows}

    def put(self, key: str, backend: str, task: str, request: dict, result: dict, prompt_tokens: int,
            completion_tokens: int) -> None:
        with self.lock:
            self.pending.append((key, backend, task, json.dumps(request), json.dumps(result), prompt_tokens,
                                 completion_tokens))

    def flush(self, con) -> None:
        """Insert the pending replies (inside the caller's transaction; the caller holds the lock)."""
        if self.pending:
            self.wh.llm_cache.add(con, self.pending)
            self.pending = []


def attach_cache(wh: Warehouse, backend: Backend) -> WarehouseCache:
    """Give an LLM backend the warehouse's response cache (the builtin backend needs none)."""
    cache = WarehouseCache(wh, threading.Lock())
    if hasattr(backend, "cache"):
        backend.cache = cache
    return cache


def _run(
    items: list,
    work: Callable,
    write: Callable,
    cache: WarehouseCache,
    *,
    concurrency: int,
    desc: str,
    progress: bool,
) -> dict:
    """Call `work(item)` in a thread pool; commit `write(con, item, result)` for finished items in batches.

    Returns {item: message} for the items whose work raised FeatstoreError; they write nothing.
    """
    failed: dict = {}
    done: list[tuple] = []
    last_commit = time.monotonic()

    def commit() -> None:
        nonlocal done, last_commit
        if not done and not cache.pending:
            return
        with cache.lock, cache.wh.transaction() as con:
            cache.flush(con)
            for item, result in done:
                write(con, item, result)
        done, last_commit = [], time.monotonic()

    pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
    try:
        with tqdm(total=len(items), desc=desc, unit="feature", disable=not progress) as bar:
            futures = {pool.submit(work, item): item for item in items}
            for future in as_completed(futures):
                item = futures[future]
                try:
                    done.append((item, future.result()))
                except FeatstoreError as exc:
                    failed[item] = str(exc)
                bar.update()
                if len(done) >= COMMIT_EVERY_FEATURES or time.monotonic() - last_commit > COMMIT_EVERY_SECONDS:
                    commit()
    finally:  # an interrupt or a bug still keeps the features that finished, and the cached replies
        pool.shutdown(wait=True, cancel_futures=True)
        commit()
    return failed


def _shown(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.kind in SHOWN_KINDS]


def _scored(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if s.kind in SCORED_KINDS]


def explain(
    wh: Warehouse,
    sae: str,
    corpus: str | None = None,
    *,
    features: list[int] | None = None,
    top: int | None = None,
    backend: Backend | None = None,
    seed: int = 0,
    concurrency: int = 4,
    progress: bool = True,
) -> dict:
    """Sample and explain features of an SAE that have no explanation by this backend yet."""
    backend = backend or BuiltinBackend()
    with wh.transaction() as con:
        corpus = corpus or default_corpus(wh, con, sae)
        chosen = select_features(wh, con, sae, corpus, features=features, top=top)
        sampled = sample_features(wh, con, sae, corpus, chosen, seed=seed)
        explained = wh.explanations.explained(con, sae, corpus, backend.name, backend.prompt_version)
        todo = [f for f in chosen if f not in explained]
        samples = load_samples(wh, con, sae, corpus, todo)
    cache = attach_cache(wh, backend)

    def write(con, feature: int, result) -> None:
        wh.explanations.insert({
            "sae": sae, "corpus": corpus, "feature": feature, "explainer": backend.name,
            "prompt_version": backend.prompt_version, "explanation": result.text,
            "n_samples": len(_shown(samples[feature])), "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
        }, con)

    failed = _run(todo, lambda f: backend.explain(_shown(samples[f])), write, cache,
                  concurrency=concurrency, desc=f"explain {sae}", progress=progress)
    return {"sae": sae, "corpus": corpus, "explainer": backend.name, "chosen": chosen, "features": len(chosen),
            "sampled": sampled,
            "explained": len(todo) - len(failed), "already_explained": len(chosen) - len(todo), "failed": failed}


@dataclass(frozen=True)
class ScoreJob:
    """Predict `feature` of `sae` from the explanation of `source_feature` of `source_sae`."""

    sae: str
    feature: int
    source_sae: str
    source_feature: int
    kind: str  # self | transfer | shuffled


def pearson(simulated: Iterable[float], true: Iterable[float]) -> float | None:
    """Pearson r; 0 when the simulation is constant (it says nothing), None when the truth is constant."""
    x, y = np.asarray(list(simulated), dtype=float), np.asarray(list(true), dtype=float)
    if len(y) < 2 or y.std() == 0:
        return None
    if x.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _score_jobs(
    wh: Warehouse,
    corpus: str,
    jobs: list[ScoreJob],
    simulator: Backend,
    explainer: str,
    explainer_version: str,
    *,
    concurrency: int,
    progress: bool,
) -> dict:
    """Simulate and score the jobs not scored yet whose source feature has an explanation."""
    key = [corpus, explainer, explainer_version, simulator.name, simulator.prompt_version]
    with wh.connect() as con:
        stored = wh.scores.scored(con, *key)
        explanations = wh.explanations.texts(con, *key[:3])
        runnable = [j for j in jobs if (j.source_sae, j.source_feature) in explanations]
        todo = [j for j in runnable if (j.sae, j.feature, j.source_sae, j.source_feature) not in stored]
        samples = {}
        for sae in sorted({j.sae for j in todo}):
            loaded = load_samples(wh, con, sae, corpus, sorted({j.feature for j in todo if j.sae == sae}))
            samples.update({(sae, f): _scored(s) for f, s in loaded.items()})
    cache = attach_cache(wh, simulator)

    def work(job: ScoreJob):
        return simulator.simulate(explanations[job.source_sae, job.source_feature], samples[job.sae, job.feature])

    def write(con, job: ScoreJob, predictions) -> None:
        scored = samples[job.sae, job.feature]
        record = {
            "sae": job.sae, "corpus": corpus, "feature": job.feature, "kind": job.kind, "source_sae": job.source_sae,
            "source_feature": job.source_feature, "explainer": explainer, "explainer_version": explainer_version,
            "simulator": simulator.name, "simulator_version": simulator.prompt_version,
            "score": pearson([p.value for p in predictions], [s.act for s in scored]), "n_samples": len(scored),
            "prompt_tokens": sum(p.prompt_tokens for p in predictions),
            "completion_tokens": sum(p.completion_tokens for p in predictions),
        }
        rows = pa.table({
            "tok": pa.array([s.tok for s in scored], pa.uint32()),
            "kind": [s.kind for s in scored],
            "true_act": pa.array([s.act for s in scored], pa.float32()),
            "true_bin": pa.array([s.bin for s in scored], pa.int8()),
            "simulated": [p.value for p in predictions],
            "how": [p.how for p in predictions],
        })
        wh.scores.add(con, record, rows)

    failed = _run(todo, work, write, cache, concurrency=concurrency, desc=f"score with {simulator.name}",
                  progress=progress)
    return {"scored": len(todo) - len(failed), "already_scored": len(runnable) - len(todo),
            "unexplained": len(jobs) - len(runnable), "failed": {job.feature: msg for job, msg in failed.items()}}


def _mean_score(wh: Warehouse, sae: str, corpus: str, kind: str, features: list[int], explainer: str,
                simulator: Backend) -> float | None:
    return wh.scores.mean(sae=sae, corpus=corpus, kind=kind, feature=list(features), explainer=explainer,
                                    simulator=simulator.name, simulator_version=simulator.prompt_version)


def score(
    wh: Warehouse,
    sae: str,
    corpus: str | None = None,
    *,
    features: list[int] | None = None,
    top: int | None = None,
    backend: Backend | None = None,
    explainer: str | None = None,
    seed: int = 0,
    concurrency: int = 4,
    progress: bool = True,
) -> dict:
    """Score features' own explanations with `backend` as simulator.

    Explanations come from `backend` too (missing ones are made first) unless `explainer` names the
    stored explanations to score, e.g. simulate an `openai:…` explainer's sentences with `builtin`.
    """
    backend = backend or BuiltinBackend()
    with wh.connect() as con:
        corpus = corpus or default_corpus(wh, con, sae)
        chosen = select_features(wh, con, sae, corpus, features=features, top=top)
        if explainer is not None:
            version = wh.explanations.latest_version(con, sae, corpus, explainer)
            if version is None:
                raise FeatstoreError(
                    f"no explanations by {explainer!r} for SAE {sae!r} on corpus {corpus!r}; "
                    "run `featstore explain` with that backend first"
                )
    failed = {}
    if explainer is None:
        made = explain(wh, sae, corpus, features=chosen, backend=backend, seed=seed, concurrency=concurrency,
                       progress=progress)
        explainer, version, failed = backend.name, backend.prompt_version, made["failed"]
    jobs = [ScoreJob(sae, f, sae, f, "self") for f in chosen]
    summary = _score_jobs(wh, corpus, jobs, backend, explainer, version, concurrency=concurrency, progress=progress)
    return {"sae": sae, "corpus": corpus, "explainer": explainer, "explainer_version": version,
            "simulator": backend.name, "features": len(chosen), **summary, "failed": {**failed, **summary["failed"]},
            "mean_score": _mean_score(wh, sae, corpus, "self", chosen, explainer, backend)}


def shuffled_baseline(
    wh: Warehouse,
    sae: str,
    corpus: str | None = None,
    *,
    features: list[int] | None = None,
    top: int | None = None,
    backend: Backend | None = None,
    explainer: str | None = None,
    seed: int = 0,
    concurrency: int = 4,
    progress: bool = True,
) -> dict:
    """Mean score of features' own explanations beside the mean when each feature gets another's.

    The donors are a seeded derangement of the scored features, so no feature keeps its own
    explanation and every explanation is used once; the gap between the two means is what the
    explanations actually carry.
    """
    backend = backend or BuiltinBackend()
    own = score(wh, sae, corpus, features=features, top=top, backend=backend, explainer=explainer, seed=seed,
                concurrency=concurrency, progress=progress)
    corpus, explainer = own["corpus"], own["explainer"]
    scored = wh.scores.features(sae=sae, corpus=corpus, kind="self", explainer=explainer,
                                          explainer_version=own["explainer_version"], simulator=backend.name,
                                          simulator_version=backend.prompt_version)
    if features is not None or top is not None:
        with wh.connect() as con:
            chosen = set(select_features(wh, con, sae, corpus, features=features, top=top))
        scored = [f for f in scored if f in chosen]
    if len(scored) < 2:
        raise FeatstoreError("a shuffled baseline needs at least two scored features; widen --features or --top")
    order = list(scored)
    random.Random(seed).shuffle(order)
    donors = {f: order[(i + 1) % len(order)] for i, f in enumerate(order)}
    jobs = [ScoreJob(sae, f, sae, donors[f], "shuffled") for f in scored]
    shuffled = _score_jobs(wh, corpus, jobs, backend, explainer, own["explainer_version"], concurrency=concurrency,
                           progress=progress)
    return {"sae": sae, "corpus": corpus, "explainer": explainer, "simulator": backend.name, "features": len(scored),
            "explained_mean": _mean_score(wh, sae, corpus, "self", scored, explainer, backend),
            "shuffled_mean": _mean_score(wh, sae, corpus, "shuffled", scored, explainer, backend),
            "failed": {**own["failed"], **shuffled["failed"]}}


def matched_features(con, parent_sae: str, child_sae: str, corpus: str, *, threshold: float,
                     stat: str) -> list[tuple[int, int, float]]:
    """(parent feature, its best child match, r) with r >= threshold, from the view feature_matches."""
    matches = run_query(con, "correlation/matched_features", parent_sae=parent_sae, child_sae=child_sae, corpus=corpus,
                        stat=stat).fetchall()
    if not matches:
        raise FeatstoreError(
            f"no {stat} correlation run between {parent_sae!r} and {child_sae!r} on corpus {corpus!r}; "
            "run `featstore correlate` first"
        )
    return [(f, m, r) for f, m, r in matches if r is not None and r >= threshold]


def transfer(
    wh: Warehouse,
    parent_sae: str,
    child_sae: str,
    corpus: str | None = None,
    *,
    threshold: float = 0.8,
    stat: str = "all_tokens",
    backend: Backend | None = None,
    explainer: str | None = None,
    seed: int = 0,
    concurrency: int = 4,
    progress: bool = True,
) -> dict:
    """Score each matched parent feature's explanation against its child feature's activations.

    The parent and child features are also scored on their own explanations, so the view
    `explanation_transfer` can put the three scores side by side.
    """
    backend = backend or BuiltinBackend()
    with wh.connect() as con:
        corpus = corpus or default_corpus(wh, con, parent_sae)
        pairs = matched_features(con, parent_sae, child_sae, corpus, threshold=threshold, stat=stat)
    if not pairs:
        raise FeatstoreError(f"no feature of {parent_sae!r} matches one of {child_sae!r} at r >= {threshold}; lower --threshold")
    parents, children = sorted({p for p, _, _ in pairs}), sorted({c for _, c, _ in pairs})
    own_parent = score(wh, parent_sae, corpus, features=parents, backend=backend, explainer=explainer, seed=seed,
                       concurrency=concurrency, progress=progress)
    own_child = score(wh, child_sae, corpus, features=children, backend=backend, seed=seed,
                      concurrency=concurrency, progress=progress)
    jobs = [ScoreJob(child_sae, c, parent_sae, p, "transfer") for p, c, _ in pairs]
    moved = _score_jobs(wh, corpus, jobs, backend, own_parent["explainer"], own_parent["explainer_version"],
                        concurrency=concurrency, progress=progress)
    transfer_mean = wh.scores.mean(kind="transfer", sae=child_sae, source_sae=parent_sae, corpus=corpus,
                                             explainer=own_parent["explainer"], simulator=backend.name,
                                             simulator_version=backend.prompt_version)
    return {"parent_sae": parent_sae, "child_sae": child_sae, "corpus": corpus, "pairs": len(pairs),
            "explainer": own_parent["explainer"], "simulator": backend.name, "parent_mean": own_parent["mean_score"],
            "transfer_mean": transfer_mean, "child_mean": own_child["mean_score"], "scored": moved["scored"],
            "failed": {**own_parent["failed"], **own_child["failed"], **moved["failed"]}}
