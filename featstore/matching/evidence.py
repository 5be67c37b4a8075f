"""Build the evidence of a compared pair of SAEs: each match method's candidate pairs, and assignments.

Weight cosines are data-free, computed once per pair of SAEs (featstore.matching.cosine), and so is
the crosscoder method where the two models have a crosscoder (featstore.matching.crosscoder); co-firing
Jaccard is computed per corpus in SQL (macro jaccard_pairs); correlation statistics are already
evidence once `featstore correlate` has run. The one-to-one policy needs an assignment solved in
Python (featstore.matching.policies), so it is computed here for every method with evidence on the
pair and stored in match_assignments; the best and mutual policies are plain views.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.matching.cosine import cosine_candidates
from featstore.matching.crosscoder import crosscoder_pairs
from featstore.matching.methods import COMPUTED, DATA_FREE, METHODS
from featstore.matching.policies import one_to_one
from featstore.models.hf import resolve_device
from featstore.saes.catalog import get_sae
from featstore.text.slices import slices_to_compute
from featstore.warehouse import Warehouse

TOP_K = 5  # cosine partners kept per feature on each side, beside every pair above the method's floor


def build_evidence(
    wh: Warehouse,
    sae_a: str,
    sae_b: str,
    corpora: Sequence[str] = (),
    *,
    methods: Sequence[str] | None = None,
    top_k: int = TOP_K,
    device: str | None = None,
) -> dict:
    """Compute and store the evidence of two SAEs, replacing earlier runs of the same pair.

    Data-free methods (weights, crosscoder) run once; activation methods and the one-to-one assignments
    of every method with evidence (correlation runs included) run on each of `corpora`, and on the
    weights when a data-free method ran. `methods` defaults to every method the pair has what it needs
    for (the crosscoder method needs a crosscoder of the two models). Returns {method: {corpus: counts}}.
    """
    methods = list(applicable_methods(wh, sae_a, sae_b) if methods is None else methods)
    rows = _check(wh, sae_a, sae_b, corpora, methods)
    device = resolve_device(device)  # a bad --device is refused before any run is written
    summary: dict[str, dict] = {}
    weight_methods = [m for m in methods if METHODS[m].source in DATA_FREE]
    if weight_methods:
        tensors = [_weights(row) for row in rows]
        for name in weight_methods:
            start = time.perf_counter()
            method = METHODS[name]
            if method.source == "crosscoder":
                pairs, k = _crosscoder_evidence(wh, rows, tensors, device), 1
            else:
                pairs, k = cosine_candidates(method.vectors(tensors[0]), method.vectors(tensors[1]), top_k=top_k,
                                             floor=method.floor, device=device), top_k
            _store_run(wh, sae_a, sae_b, None, name, k, pairs, time.perf_counter() - start)
            summary.setdefault(name, {})["weights"] = {"pairs": len(pairs[0])}
    for corpus in corpora:
        for name in (m for m in methods if METHODS[m].source == "activations"):
            summary.setdefault(name, {})[corpus] = {"pairs": _store_sql_run(wh, sae_a, sae_b, corpus, name)}
    for corpus in ([None] if weight_methods else []) + list(corpora):  # the weights' evidence changes with their runs only
        for name, assigned in assign(wh, sae_a, sae_b, corpus).items():
            summary.setdefault(name, {}).setdefault(corpus or "weights", {})["one_to_one"] = assigned
    return summary


def slices_to_match(wh: Warehouse, sae_a: str, sae_b: str, corpora: Sequence[str] = (), *,
                    methods: Sequence[str] | None = None, top_k: int = TOP_K, every: bool = False,
                    ) -> tuple[list[str], Sequence[str] | None, str | None]:
    """What `featstore match` computes: (corpora, methods, a line naming the skipped slices or None).

    Named `corpora` are computed as named, with every asked method. Otherwise the slices are the weights and
    every corpus both SAEs have activations on, and a slice is skipped when each asked method that reads it
    has a run there (weight runs of this top_k, corpus runs made after both partitions were written); with
    `every` none is. One-to-one assignments are solved again on the slices computed.
    """
    if corpora:
        return list(corpora), methods, None
    asked = list(applicable_methods(wh, sae_a, sae_b) if methods is None else methods)
    _check(wh, sae_a, sae_b, [], asked)
    reading = {source: {m for m in asked if _source_of(m) == source} for source in ("weights", "activations")}
    found = wh.matches.methods_by_slice(sae_a, sae_b, top_k)
    stored = {s: reading[_source(s)] <= set(run) for s, run in found.items() if reading[_source(s)]}
    if not stored:
        raise FeatstoreError(f"SAEs {sae_a!r} and {sae_b!r} have activations on no common corpus slice, which "
                             f"{', '.join(asked)} reads; ingest both on one with `featstore ingest`")
    todo, skipped = slices_to_compute(stored, every, f"{sae_a} x {sae_b} has its runs of {', '.join(asked)}",
                                      "computes them again")
    sources = {_source(s) for s in todo}
    return [s for s in todo if s is not None], [m for m in asked if _source_of(m) in sources], skipped


def _source(slice_: str | None) -> str:
    """What a method must read to have a run on a slice: None is the weights, a name a corpus's activations."""
    return "weights" if slice_ is None else "activations"


def _source_of(method: str) -> str:
    """The slice kind a method's runs are on: the weights (data-free) or a corpus's activations."""
    return "weights" if METHODS[method].source in DATA_FREE else "activations"


def applicable_methods(wh: Warehouse, sae_a: str, sae_b: str) -> list[str]:
    """Every computed method, the crosscoder method only when the two SAEs' models have a crosscoder."""
    rows = [get_sae(wh, sae_a), get_sae(wh, sae_b)]
    return [m for m in COMPUTED if METHODS[m].source != "crosscoder" or _crosscoder_of(wh, rows) is not None]


def _crosscoder_of(wh: Warehouse, rows: list[dict]) -> tuple[str, int] | None:
    """(the crosscoder of the two SAEs' models at their hook, the crosscoder side of the first SAE's model), or None."""
    if rows[0]["hook_point"] != rows[1]["hook_point"]:
        return None
    models = [rows[0]["model"], rows[1]["model"]]
    for side, (parent, child) in enumerate((models, models[::-1])):
        found = wh.crosscoders.for_models(parent, child, rows[0]["hook_point"])
        if found is not None:
            return found, side
    return None


def _crosscoder_evidence(wh: Warehouse, rows: list[dict], tensors: list[dict], device) -> tuple:
    from featstore.crosscoders.catalog import load

    crosscoder_id, side_a = _crosscoder_of(wh, rows)
    xc = load(wh, crosscoder_id)
    shared = wh.crosscoders.latents(crosscoder_id).column("class").to_numpy(zero_copy_only=False) == "shared"
    decoders = xc.W_dec.detach()
    return crosscoder_pairs(tensors[0]["W_dec"], tensors[1]["W_dec"], decoders[:, side_a], decoders[:, 1 - side_a],
                            shared, device=device)


def _check(wh: Warehouse, sae_a: str, sae_b: str, corpora: Sequence[str], methods: Sequence[str]) -> list[dict]:
    unknown = [m for m in methods if m not in COMPUTED]
    if unknown:
        hints = {"correlation": " (correlation statistics come from `featstore correlate`)",
                 "causal": " (the causal check runs with `featstore causal`)"}
        hint = hints.get(METHODS[unknown[0]].source, "") if unknown[0] in METHODS else ""
        raise FeatstoreError(f"unknown match method {unknown[0]!r}{hint}; use one of {', '.join(COMPUTED)}")
    if sae_a == sae_b:
        raise FeatstoreError(f"SAE {sae_a!r} would be matched with itself; give two different SAEs")
    rows = [get_sae(wh, sae_a), get_sae(wh, sae_b)]
    if "crosscoder" in methods and _crosscoder_of(wh, rows) is None:
        raise FeatstoreError(f"models {rows[0]['model']!r} and {rows[1]['model']!r} have no crosscoder at the SAEs' hook; "
                             f"train one with `featstore crosscoder train {rows[0]['model']} {rows[1]['model']}`")
    if any(METHODS[m].source in DATA_FREE for m in methods) and rows[0]["d_in"] != rows[1]["d_in"]:
        raise FeatstoreError(
            f"SAEs {sae_a!r} (d_in {rows[0]['d_in']}, {rows[0]['hook_point']}) and {sae_b!r} (d_in {rows[1]['d_in']}, "
            f"{rows[1]['hook_point']}) read vectors of different widths, so their weights cannot be compared by cosine"
        )
    for corpus in corpora:
        have = wh.named_scalar("matching/partitions_present", corpus=corpus, sae_a=sae_a, sae_b=sae_b)
        if have < 2:
            raise FeatstoreError(f"SAEs {sae_a!r} and {sae_b!r} need activations on corpus {corpus!r}; run `featstore ingest` first")
    return rows


def _weights(row: dict) -> dict:
    from safetensors.torch import load_file

    from featstore.saes import WEIGHTS_FILE

    path = Path(row["path"] or "") / WEIGHTS_FILE
    if not row["path"] or not path.is_file():
        raise FeatstoreError(f"SAE {row['id']!r} has no weights file ({path}); cosine matching reads its weights")
    return load_file(str(path))


def _store_run(wh: Warehouse, sae_a: str, sae_b: str, corpus: str | None, method: str, top_k: int | None,
               pairs: tuple[np.ndarray, np.ndarray, np.ndarray], seconds: float) -> None:
    table = pa.table({"feature_a": pa.array(pairs[0], pa.uint32()), "feature_b": pa.array(pairs[1], pa.uint32()),
                      "score": pa.array(pairs[2], pa.float32())})
    with wh.transaction() as con:
        run_id = wh.matches.new_run(con, _key(sae_a, sae_b, corpus, method), top_k=top_k, floor=METHODS[method].floor)
        wh.matches.add_pairs(con, run_id, table)
        wh.matches.finish(con, run_id, seconds)


def _store_sql_run(wh: Warehouse, sae_a: str, sae_b: str, corpus: str, method: str) -> int:
    start = time.perf_counter()
    with wh.transaction() as con:
        run_id = wh.matches.new_run(con, _key(sae_a, sae_b, corpus, method), top_k=None, floor=METHODS[method].floor)
        con.execute(f"INSERT INTO match_pairs SELECT ?, * FROM {METHODS[method].sql}(?, ?, ?, ?)",
                    [run_id, sae_a, sae_b, corpus, METHODS[method].floor])
        return wh.matches.finish(con, run_id, time.perf_counter() - start)


def _key(sae_a: str, sae_b: str, corpus: str | None, method: str) -> dict:
    return {"sae_a": sae_a, "sae_b": sae_b, "corpus": corpus, "method": method}


def assign(wh: Warehouse, sae_a: str, sae_b: str, corpus: str | None, methods: Sequence[str] | None = None) -> dict[str, int]:
    """Solve and store the one-to-one assignment of every method (of `methods`, when given) with evidence
    for the pair on `corpus`."""
    evidence = wh.named("matching/pair_evidence", sae_a=sae_a, sae_b=sae_b, corpus=corpus)
    names = evidence.column("method").to_numpy(zero_copy_only=False)
    assigned = {}
    with wh.transaction() as con:
        for name in sorted(set(names.tolist()) & set(methods or names.tolist())):
            mask = names == name
            fa, fb, score = (evidence.column(c).to_numpy()[mask] for c in ("feature_x", "feature_y", "score"))
            picked = pa.table(dict(zip(("feature_a", "feature_b", "score"), one_to_one(fa, fb, score))))
            wh.matches.assign(con, _key(sae_a, sae_b, corpus, name), picked)
            assigned[name] = picked.num_rows
    return assigned
