"""What the browser reads: read-only catalog connections, a cached catalog snapshot, and per-partition
feature indexes.

Decision (issue 14, item 8): the browser never writes the warehouse. A feature page needs its
feature's activations on every corpus slice; scanning each Parquet partition per request would cost
far more than the page's catalog queries. So each partition is read once into memory, sorted by
(feature, act descending): a feature's activations are then one contiguous slice, found by binary
search, and its top contexts, quantile samples, histogram and density come from that slice. The
index is keyed by the partition's file path, which changes whenever a partition is rewritten, so a
new ingest is picked up without invalidation logic. The catalog tables a feature page needs (models,
lineage, SAEs, partitions, best matches as arrays, explanations, persisting links) are read into a
snapshot keyed by the DuckDB file's size and mtime, so a feature page opens no connection while
the catalog is unchanged (opening the catalog alone takes 50-150 ms). Other pages (edge lists,
quality, search by explanation, SQL) query a read-only connection opened when first needed and
closed at the end of the request, so ingest and the DuckDB shell keep working while serving.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse
from featstore.warehouse.queries import arrow, sql

_CONNECT_LOCK = threading.Lock()


def query_text(name: str) -> str:
    """A named statement of sql/queries/browser/ (loaded by featstore.warehouse.tables, as every named query)."""
    return sql(f"browser/{name}")


def connect_read_only(wh: Warehouse) -> duckdb.DuckDBPyConnection:
    """A read-only connection that can read the warehouse's partitions and no other file.

    Issue 10's sandboxed connection (`Warehouse.read_only_connection`): only the catalog and the
    committed partition files can be read, nothing written, and the settings are locked.
    """
    if not wh.exists():
        raise FeatstoreError(f"no warehouse at {wh.root}: run `featstore run` (or give --warehouse DIR)")
    with _CONNECT_LOCK:
        return wh.read_only_connection()


class LazyConnection:
    """A read-only connection opened on first use; `close` is a no-op if it never was."""

    def __init__(self, wh: Warehouse):
        self.wh = wh
        self._con: duckdb.DuckDBPyConnection | None = None

    def __getattr__(self, name: str):
        if self._con is None:
            self._con = connect_read_only(self.wh)
        return getattr(self._con, name)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


def rows(con: duckdb.DuckDBPyConnection, name: str, **params) -> list[dict]:
    """Run a named query with $-parameters; rows as dicts."""
    result = con.execute(query_text(name), params or None)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def _json(value):
    return json.loads(value) if isinstance(value, str) else (value or {})


@dataclass
class Snapshot:
    """The small catalog tables, read together once per catalog version."""

    models: dict[str, dict]
    lineage: list[dict]
    saes: dict[str, dict]
    partitions: dict[str, dict[str, dict]]   # sae -> corpus -> row
    links: list[dict]                        # persisting parent -> child feature links
    explanations: dict[tuple[str, int], list[dict]]
    matches: list[dict]                      # per run and side: sae, match_sae, corpus, stat, arrays
    down: dict = field(default_factory=dict)
    up: dict = field(default_factory=dict)

    def __post_init__(self):
        self.corpora = [{"corpus": c} for c in sorted({link["corpus"] for link in self.links})]
        for link in self.links:
            parent = (link["parent"], link["parent_feature"], link["corpus"])
            child = (link["child"], link["child_feature"], link["corpus"])
            self.down.setdefault(parent, []).append((child, link["r"]))
            self.up.setdefault(child, []).append((parent, link["r"]))

    def parents(self, model: str) -> list[dict]:
        return [e for e in self.lineage if e["child"] == model]

    def children(self, model: str) -> list[dict]:
        return [e for e in self.lineage if e["parent"] == model]

    def relation(self, model: str, other: str) -> str:
        """How `other` relates to `model` in the lineage, as a feature page names it."""
        if other == model:
            return "same model (seed baseline)"
        for e in self.parents(model):
            if e["parent"] == other:
                return "merge parent" if e["relation"] == "merge" else "parent"
        for e in self.children(model):
            if e["child"] == other:
                return "merge child" if e["relation"] == "merge" else "child"
        return "other model"

    def family(self, model: str, feature: int) -> list[dict]:
        """Every member of the feature's families (chains of persisting matches), as graph edges."""
        edges, seen = set(), set()
        frontier = [(model, feature, link["corpus"]) for link in self.corpora]
        frontier = [node for node in frontier if node in self.down or node in self.up]
        while frontier:
            node = frontier.pop()
            if node in seen:
                continue
            seen.add(node)
            for child, r in self.down.get(node, []):
                edges.add((node, child, r))
                frontier.append(child)
            for parent, r in self.up.get(node, []):
                edges.add((parent, node, r))
                frontier.append(parent)
        return [{"parent": p[0], "parent_feature": p[1], "child": c[0], "child_feature": c[1], "corpus": p[2], "r": r}
                for p, c, r in sorted(edges, key=lambda e: (e[0][2], e[0][0], e[1][0]))]

    def feature_matches(self, sae: str, feature: int) -> list[dict]:
        """The feature's best match in every run that includes its SAE."""
        out = []
        for m in self.matches:
            if m["sae"] == sae and feature < len(m["match"]) and m["match"][feature] >= 0:
                r = float(m["r"][feature])
                out.append({"match_sae": m["match_sae"], "match": int(m["match"][feature]), "corpus": m["corpus"],
                            "stat": m["stat"], "r": None if np.isnan(r) else r})
        return out

    def primary_sae(self, model: str) -> str | None:
        ids = [s["id"] for s in self.saes.values() if s["model"] == model and s["is_primary"]]
        return ids[-1] if ids else None


def read_snapshot(con: duckdb.DuckDBPyConnection) -> Snapshot:
    saes = {r["id"]: {**r, "metrics": _json(r["metrics"])} for r in rows(con, "catalog_saes")}
    partitions: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows(con, "catalog_partitions"):
        partitions[r["sae"]][r["corpus"]] = r
    return Snapshot(
        models={r["name"]: {**r, "metrics": _json(r["metrics"])} for r in rows(con, "catalog_models")},
        lineage=rows(con, "catalog_lineage"),
        saes=saes,
        partitions=dict(partitions),
        links=rows(con, "catalog_links"),
        explanations=_grouped(rows(con, "catalog_explanations"), ("sae", "feature")),
        matches=_match_arrays(con),
    )


def _grouped(items: list[dict], key: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = defaultdict(list)
    for item in items:
        out[tuple(item[k] for k in key)].append(item)
    return dict(out)


def _match_arrays(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Best matches of every run and side as arrays indexed by feature (match -1: none)."""
    table = con.sql(query_text("catalog_best_matches")).to_arrow_table()
    run_id, side = table.column("run_id").to_numpy(), table.column("side").to_numpy(zero_copy_only=False)
    feature, match, r = (table.column(c).to_numpy(zero_copy_only=False) for c in ("feature", "match", "r"))
    out = []
    for run in rows(con, "catalog_runs"):
        for this, other, size, key in (("sae_a", "sae_b", "d_a", "a"), ("sae_b", "sae_a", "d_b", "b")):
            mask = (run_id == run["id"]) & (side == key)
            matches, rs = np.full(run[size], -1, dtype=np.int64), np.full(run[size], np.nan, dtype=np.float32)
            matches[feature[mask].astype(np.int64)] = match[mask]
            rs[feature[mask].astype(np.int64)] = np.asarray(r[mask], dtype=np.float32)
            out.append({"sae": run[this], "match_sae": run[other], "corpus": run["corpus"], "stat": run["stat"],
                        "match": matches, "r": rs})
    return out


class PartitionIndex:
    """One (SAE, corpus) partition sorted by (feature, act descending): a feature is one slice."""

    def __init__(self, path: str, d_sae: int):
        with duckdb.connect() as con:
            table = arrow(con, "browser/partition_by_feature", path=path)
        self.feature = table.column("feature").to_numpy()
        self.tok = table.column("tok").to_numpy()
        self.act = table.column("act").to_numpy()
        self.offsets = np.searchsorted(self.feature, np.arange(d_sae + 1, dtype=np.int64))
        self.n_firing = np.diff(self.offsets)

    def slice(self, feature: int) -> tuple[np.ndarray, np.ndarray]:
        """(tok, act) of the feature's activations, strongest first."""
        lo, hi = self.offsets[feature], self.offsets[feature + 1]
        return self.tok[lo:hi], self.act[lo:hi]


class CorpusTokens:
    """A corpus slice's tokens in tok order: document ids and decoded token texts, for contexts."""

    def __init__(self, con: duckdb.DuckDBPyConnection, corpus: str, tokenizer: str, tok_start: int):
        table = con.sql(query_text("corpus_tokens"), params={"corpus": corpus}).to_arrow_table()
        self.tok_start = tok_start
        self.doc_id = table.column("doc_id").to_numpy()
        self.token_id = table.column("token_id").to_numpy()
        vocab = con.execute(query_text("vocab_texts"), {"tokenizer": tokenizer}).fetchall()
        texts = [""] * (max((i for i, _ in vocab), default=-1) + 1)
        for token_id, text in vocab:
            texts[token_id] = text
        self.texts = texts

    def context(self, tok: int, width: int) -> list[tuple[int, str]]:
        """(tok, text) of the tokens within `width` of `tok` in the same document."""
        i = tok - self.tok_start
        lo, hi = max(0, i - width), min(len(self.doc_id), i + width + 1)
        doc = self.doc_id[i]
        return [(self.tok_start + j, self.texts[self.token_id[j]]) for j in range(lo, hi) if self.doc_id[j] == doc]

    def token_ids_matching(self, text: str) -> np.ndarray:
        """Token ids whose text is `text`, with or without surrounding whitespace."""
        wanted = text.strip() or text
        return np.array([i for i, t in enumerate(self.texts) if t == text or (t.strip() or t) == wanted], dtype=np.int64)


class DecoderIndex:
    """Unit-normalised decoder rows of one SAE, for cosine neighbours in the dictionary."""

    def __init__(self, folder: str):
        from safetensors.numpy import load_file

        weights = load_file(str(Path(folder) / "sae_weights.safetensors"))
        w_dec = weights["W_dec"].astype(np.float32)
        self.rows = w_dec / np.maximum(np.linalg.norm(w_dec, axis=1, keepdims=True), 1e-12)

    def neighbours(self, feature: int, n: int = 8) -> list[tuple[int, float]]:
        cosine = self.rows @ self.rows[feature]
        cosine[feature] = -np.inf
        best = np.argpartition(-cosine, min(n, len(cosine) - 1))[:n]
        return [(int(i), float(cosine[i])) for i in sorted(best, key=lambda i: -cosine[i])]


class Store:
    """The browser's view of a warehouse: connections, the catalog snapshot and cached indexes."""

    def __init__(self, wh: Warehouse):
        self.wh = wh
        self._lock = threading.Lock()
        self._snapshot: tuple[tuple, Snapshot] | None = None
        self._partitions: dict[tuple[str, str], tuple[str, PartitionIndex]] = {}
        self._corpora: dict[tuple, CorpusTokens] = {}
        self._decoders: dict[tuple, DecoderIndex | None] = {}

    def connect(self) -> LazyConnection:
        return LazyConnection(self.wh)

    def snapshot(self, con: duckdb.DuckDBPyConnection) -> Snapshot:
        version = self.wh.catalog_version()
        with self._lock:
            if self._snapshot is None or self._snapshot[0] != version:
                self._snapshot = (version, read_snapshot(con))
            return self._snapshot[1]

    def partition(self, snap: Snapshot, sae: str, corpus: str) -> PartitionIndex:
        row = snap.partitions[sae][corpus]
        with self._lock:
            path, index = self._partitions.get((sae, corpus), (None, None))
            if path != row["path"]:  # new, or rewritten since: the old index is dropped
                index = PartitionIndex(str(self.wh.root / row["path"]), snap.saes[sae]["d_sae"])
                self._partitions[(sae, corpus)] = (row["path"], index)
            return index

    def tokens(self, con: duckdb.DuckDBPyConnection, row: dict) -> CorpusTokens:
        key = (row["corpus"], row["tokenizer"], row["tok_start"])
        with self._lock:
            if key not in self._corpora:
                self._corpora[key] = CorpusTokens(con, *key)
            return self._corpora[key]

    def decoder(self, sae_row: dict) -> DecoderIndex | None:
        """The SAE's decoder rows, or None when its weights file is not there."""
        path = self.wh.resolve(sae_row.get("path"))
        weights = Path(path) / "sae_weights.safetensors" if path else None
        key = (sae_row["id"], str(weights), weights.stat().st_mtime_ns if weights and weights.exists() else None)
        with self._lock:
            if key not in self._decoders:
                self._decoders[key] = DecoderIndex(path) if key[2] is not None else None
            return self._decoders[key]

    def warm(self) -> None:
        """Build every partition index and corpus token table now (serve does it before listening)."""
        con = self.connect()
        try:
            snap = self.snapshot(con)
            for sae, by_corpus in snap.partitions.items():
                for corpus, row in by_corpus.items():
                    self.partition(snap, sae, corpus)
                    self.tokens(con, row)
            for row in snap.saes.values():
                self.decoder(row)
        finally:
            con.close()
