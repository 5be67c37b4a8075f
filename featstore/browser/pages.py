"""The data of each page kind, gathered from the catalog and the partition indexes.

Each function takes the store and an open read-only connection and returns plain dicts for a
template; an unknown name raises NotFound with what exists instead.
"""

from __future__ import annotations

from collections import Counter

import duckdb
import numpy as np

from featstore.browser.data import PartitionIndex, Snapshot, Store, rows
from featstore.report.markup import visible_text

TOP_CONTEXTS = 8
BANDS = ((0.5, 0.75), (0.25, 0.5), (0.0, 0.25))  # activation bands, as shares of the top activation
PER_BAND = 3
WIDTH = 8
HIST_BINS = 24
MATCH_CONTEXTS = 3
EDGE_PAGE_ROWS = 200


class NotFound(Exception):
    """A page that does not exist; the message says what does."""

    def __init__(self, message: str, links: list[tuple[str, tuple]] = ()):
        super().__init__(message)
        self.links = list(links)


def require_sae(snap: Snapshot, sae: str) -> dict:
    if sae not in snap.saes:
        raise NotFound(f"No SAE named {sae!r} in this warehouse. SAEs here:",
                       [(s, ("sae", s)) for s in snap.saes])
    return snap.saes[sae]


# -- contexts --------------------------------------------------------------------------------------


def context(tokens, centre: int, toks_sorted: np.ndarray, acts_sorted: np.ndarray, peak: float,
            width: int = WIDTH) -> list[dict]:
    """One context: every token around `centre` with the feature's activation on it (arrays by tok)."""
    window = tokens.context(centre, width)
    ids = np.array([t for t, _ in window], dtype=toks_sorted.dtype)
    found = np.minimum(np.searchsorted(toks_sorted, ids), len(toks_sorted) - 1)
    values = np.where(toks_sorted[found] == ids, acts_sorted[found], 0.0)
    return [{"text": visible_text(text), "act": float(a), "alpha": min(1.0, float(a) / peak) if peak else 0.0,
             "centre": t == centre} for (t, text), a in zip(window, values)]


def feature_contexts(tokens, index: PartitionIndex, feature: int, n: int = TOP_CONTEXTS,
                     bands: bool = True) -> dict:
    """Top contexts and a few per activation band of one feature on one corpus."""
    toks, acts = index.slice(feature)
    if not len(toks):
        return {"top": [], "bands": []}
    by_tok = np.argsort(toks, kind="stable")
    toks_sorted, acts_sorted = toks[by_tok], acts[by_tok]
    peak = float(acts[0])

    def make(i: int) -> dict:
        return {"act": float(acts[i]), "tokens": context(tokens, int(toks[i]), toks_sorted, acts_sorted, peak)}

    top = [make(i) for i in range(min(n, len(toks)))]
    shown = set(range(len(top)))
    out = []
    for lo, hi in BANDS if bands else ():
        inside = np.nonzero((acts >= lo * peak) & (acts < hi * peak))[0]
        picks = [int(i) for i in inside[np.linspace(0, len(inside) - 1, min(PER_BAND, len(inside))).astype(int)]
                 if int(i) not in shown] if len(inside) else []
        out.append({"low": lo, "high": hi, "count": int(len(inside)), "contexts": [make(i) for i in picks]})
    return {"top": top, "bands": out}


def top_tokens(tokens, index: PartitionIndex, feature: int, k: int = 3, among: int = 30) -> list[str]:
    """The most common token texts among a feature's strongest activations."""
    toks, _ = index.slice(feature)
    texts = [tokens.texts[tokens.token_id[int(t) - tokens.tok_start]] for t in toks[:among]]
    return [visible_text(t) for t, _ in Counter(texts).most_common(k)]


# -- pages -----------------------------------------------------------------------------------------


def feature_page(store: Store, con: duckdb.DuckDBPyConnection, sae: str, feature: int, corpus: str | None) -> dict:
    snap = store.snapshot(con)
    row = require_sae(snap, sae)
    if not 0 <= feature < row["d_sae"]:
        raise NotFound(f"SAE {sae!r} has features 0 to {row['d_sae'] - 1}; there is no feature {feature}.",
                       [(f"{sae} (all features)", ("sae", sae))])
    partitions = snap.partitions.get(sae, {})
    slices = slice_rows(store, snap, sae, feature)
    strongest = strongest_slice(slices)
    if corpus not in partitions:
        corpus = strongest
    contexts = {"top": [], "bands": []}
    if corpus is not None:
        contexts = feature_contexts(store.tokens(con, partitions[corpus]), store.partition(snap, sae, corpus), feature)
    return {
        "sae": row, "feature": feature, "corpus": corpus, "strongest": strongest, "slices": slices,
        "hist_peak": max((s["max_act"] for s in slices), default=0.0),
        "explanations": snap.explanations.get((sae, feature), []),
        "contexts": contexts,
        "matches": matches(store, con, snap, row, feature),
        "evidence": rows(con, "feature_evidence", sae=sae, feature=feature),
        "latent": next(iter(rows(con, "crosscoder_latent", sae=sae, feature=feature)), None),
        "causal": rows(con, "feature_causal", sae=sae, feature=feature),
        "drift": next(iter(rows(con, "feature_drift", sae=sae, feature=feature)), None),
        "family": snap.family(row["model"], feature),
        "neighbours": neighbours(store, con, snap, row, feature, corpus),
    }


def slice_rows(store: Store, snap: Snapshot, sae: str, feature: int) -> list[dict]:
    """Per corpus slice: how often the feature fires, its density, its max activation and its histogram
    (bins shared by every slice, so their bars compare)."""
    slices = []
    for name, part in snap.partitions.get(sae, {}).items():
        acts = store.partition(snap, sae, name).slice(feature)[1]
        slices.append({"corpus": name, "n_firing": len(acts), "n_tokens": part["n_tokens"],
                       "density": len(acts) / part["n_tokens"] if part["n_tokens"] else 0.0,
                       "max_act": float(acts[:1].max(initial=0)), "acts": acts})
    edges = np.linspace(0, max((s["max_act"] for s in slices), default=0.0) or 1.0, HIST_BINS + 1)
    for s in slices:
        s["hist"] = np.histogram(s.pop("acts"), bins=edges)[0].tolist()
    return slices


def strongest_slice(slices: list[dict]) -> str | None:
    """The slice a feature page opens on: where the feature's activations are strongest (max activation,
    then firing count). Not the slice where it fires most often: a feature can fire weakly and often on
    text it was not trained for and strongly on what it encodes."""
    return max(slices, key=lambda s: (s["max_act"], s["n_firing"]))["corpus"] if slices else None


def matches(store: Store, con: duckdb.DuckDBPyConnection, snap: Snapshot, row: dict, feature: int) -> list[dict]:
    """The feature's best match in every other SAE, with r per (corpus, statistic) and top contexts."""
    grouped: dict[tuple, dict] = {}
    for m in snap.feature_matches(row["id"], feature):
        key = (m["match_sae"], m["match"])
        other_model = snap.saes[m["match_sae"]]["model"]
        entry = grouped.setdefault(key, {"sae": m["match_sae"], "model": other_model, "feature": m["match"],
                                         "relation": snap.relation(row["model"], other_model), "rs": []})
        entry["rs"].append({"corpus": m["corpus"], "stat": m["stat"], "r": m["r"]})
    out = sorted(grouped.values(), key=lambda e: (-max(_r(r) for r in e["rs"]), e["sae"]))
    for entry in out:
        best = max(entry["rs"], key=_r)
        entry["best_r"], entry["on"] = best["r"], best["corpus"]
        part = snap.partitions.get(entry["sae"], {}).get(best["corpus"])
        entry["contexts"] = []
        if part is not None:
            index = store.partition(snap, entry["sae"], best["corpus"])
            entry["contexts"] = feature_contexts(store.tokens(con, part), index, entry["feature"],
                                                 n=MATCH_CONTEXTS, bands=False)["top"]
    return out


def neighbours(store: Store, con, snap: Snapshot, row: dict, feature: int, corpus: str | None) -> list[dict] | None:
    """Decoder-space neighbours (cosine of W_dec rows), or None when the weights are not available."""
    decoder = store.decoder(row)
    if decoder is None:
        return None
    part = snap.partitions.get(row["id"], {}).get(corpus) if corpus else None
    out = []
    for other, cosine in decoder.neighbours(feature):
        tokens = (top_tokens(store.tokens(con, part), store.partition(snap, row["id"], corpus), other)
                  if part is not None else [])
        out.append({"feature": other, "cosine": cosine, "tokens": tokens})
    return out


def lineage_page(store: Store, con) -> dict:
    snap = store.snapshot(con)
    summary = rows(con, "edge_summary")
    corpora = sorted({r["corpus"] for r in summary})
    return {"snap": snap, "summary": summary, "corpora": corpora,
            "models": list(snap.models)}


EDGE_SORTS = ("feature", "match", "r", "status", "side")


def edge_page(store: Store, con, parent: str, child: str, corpus: str | None, status: str | None,
              sort: str, descending: bool, offset: int, threshold: float = 0.8, stat: str = "all_tokens") -> dict:
    snap = store.snapshot(con)
    if not any(e["parent"] == parent and e["child"] == child for e in snap.lineage):
        raise NotFound(f"No lineage edge {parent} → {child}. Edges here:",
                       [(f"{e['parent']} → {e['child']}", ("edge", e["parent"], e["child"])) for e in snap.lineage])
    corpora = sorted({c for s in (snap.primary_sae(parent), snap.primary_sae(child)) if s
                      for c in snap.partitions.get(s, {})})
    corpus = corpus if corpus in corpora else (corpora[0] if corpora else None)
    found = rows(con, "edge_features", parent=parent, child=child, corpus=corpus, threshold=threshold,
                 stat=stat) if corpus else []
    counts = Counter((r["side"], r["status"]) for r in found)
    if status:
        found = [r for r in found if r["status"] == status]
    key = sort if sort in EDGE_SORTS else "r"
    found = (sorted((r for r in found if r[key] is not None), key=lambda r: r[key], reverse=descending)
             + [r for r in found if r[key] is None])
    features = []
    for r in found[offset:offset + EDGE_PAGE_ROWS]:
        other = child if r["side"] == "parent" else parent
        r["match_sae"] = snap.primary_sae(other)
        r["tokens"] = _tokens_of(store, con, snap, r["sae"], corpus, r["feature"])
        r["match_tokens"] = _tokens_of(store, con, snap, r["match_sae"], corpus, r["match"])
        features.append(r)
    where = {"parent": parent, "child": child, "corpus": corpus}
    return {"parent": parent, "child": child, "corpus": corpus, "corpora": corpora, "status": status,
            "sort": key, "descending": descending, "offset": offset, "total": len(found), "rows": features,
            "counts": counts, "page_rows": EDGE_PAGE_ROWS, "threshold": threshold,
            "saes": (snap.primary_sae(parent), snap.primary_sae(child)),
            "methods": rows(con, "edge_methods", **where) if corpus else [],
            "disagreements": rows(con, "edge_disagreements", **where) if corpus else []}


def _tokens_of(store: Store, con, snap: Snapshot, sae: str | None, corpus: str, feature) -> list[str]:
    part = snap.partitions.get(sae or "", {}).get(corpus)
    if part is None or feature is None:
        return []
    return top_tokens(store.tokens(con, part), store.partition(snap, sae, corpus), int(feature))


def model_page(store: Store, con, name: str) -> dict:
    snap = store.snapshot(con)
    if name not in snap.models:
        raise NotFound(f"No model named {name!r} in this warehouse. Models here:",
                       [(m, ("model", m)) for m in snap.models])
    model = snap.models[name]
    metrics = model["metrics"]
    domains = sorted({d for k in ("val_loss", "val_accuracy") for d in (metrics.get(k) or {})})
    return {"model": model, "parents": snap.parents(name), "children": snap.children(name),
            "saes": [s for s in snap.saes.values() if s["model"] == name], "domains": domains}


def sae_page(store: Store, con, sae: str, top: int = 30) -> dict:
    snap = store.snapshot(con)
    row = require_sae(snap, sae)
    slices = []
    for corpus, part in snap.partitions.get(sae, {}).items():
        index = store.partition(snap, sae, corpus)
        tokens = store.tokens(con, part)
        density = index.n_firing / max(part["n_tokens"], 1)
        live = density[density > 0]
        edges = np.arange(-6.0, 0.01, 0.5)
        hist = np.histogram(np.log10(live), bins=edges)[0].tolist() if len(live) else [0] * (len(edges) - 1)
        frequent = np.argsort(-index.n_firing, kind="stable")[:top]
        slices.append({"corpus": corpus, "n_tokens": part["n_tokens"], "dead": int((index.n_firing == 0).sum()),
                       "hist": hist, "frequent": [{"feature": int(f), "n_firing": int(index.n_firing[f]),
                                                   "tokens": top_tokens(tokens, index, int(f))} for f in frequent]})
    quality = rows(con, "sae_quality", sae=sae)
    return {"sae": row, "slices": slices, "quality": quality[0] if quality else None,
            "explained": rows(con, "sae_explained", sae=sae)}


def token_search(store: Store, con, text: str, per_sae: int = 10) -> list[dict]:
    """Per SAE and corpus, the features that fire most often on tokens whose text is `text`."""
    snap = store.snapshot(con)
    out = []
    for sae, by_corpus in snap.partitions.items():
        for corpus, part in by_corpus.items():
            tokens = store.tokens(con, part)
            ids = tokens.token_ids_matching(text)
            if not len(ids):
                continue
            index = store.partition(snap, sae, corpus)
            on_token = np.isin(tokens.token_id[index.tok.astype(np.int64) - tokens.tok_start], ids)
            counts = np.bincount(index.feature[on_token], minlength=len(index.n_firing))
            occurrences = int(np.isin(tokens.token_id, ids).sum())
            best = [int(f) for f in np.argsort(-counts, kind="stable")[:per_sae] if counts[f]]
            out.append({"sae": sae, "model": snap.saes[sae]["model"], "corpus": corpus, "occurrences": occurrences,
                        "features": [{"feature": f, "count": int(counts[f]),
                                      "share": counts[f] / occurrences, "firing": int(index.n_firing[f]),
                                      "tokens": top_tokens(tokens, index, f)} for f in best]})
    return out


def _r(match: dict) -> float:
    return -2.0 if match["r"] is None else match["r"]
