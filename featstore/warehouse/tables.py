"""The catalog's entity tables, each the only writer of its rows (sqlite-utils' `Table`).

A `Warehouse` owns one of each (`wh.saes`, `wh.corpora`, `wh.correlations`, ...). Each reads and
writes its own table with `get` / `rows_where` / `insert` / `drop` / `replace` and owns its
cascades: dropping an SAE or a corpus removes everything computed from it in the caller's one
transaction, and its files are deleted only after that transaction commits. Every fixed statement is a
named one under `sql/queries/` (see `featstore.warehouse.queries`); only the generic verbs below
assemble SQL, from table and column names.

Methods that write take the caller's connection (`con`) so several entities change in one
transaction; methods that read open a read-only connection unless given one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.warehouse import queries
from featstore.warehouse.queries import run, run_arrow


class Warehouse(Protocol):
    """What the tables use of the `featstore.warehouse.Warehouse` that owns them (stated here, so this
    module never imports the one that builds it: imports go one way, type-checking ones included)."""

    corpora: Corpora
    saes: Saes
    crosscoders: Crosscoders
    partitions: Partitions
    correlations: CorrelationRuns
    matches: MatchRuns
    explanations: Explanations

    def reading(self, con: duckdb.DuckDBPyConnection | None = None) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...
    def writing(self, con: duckdb.DuckDBPyConnection | None = None) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...
    def transaction(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...
    def resolve(self, stored: str | None) -> str | None: ...
    def drop_partition(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str | None = None) -> list[Path]: ...


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def remove_files(files: Sequence[Path]) -> None:
    """Delete files whose catalog rows a committed transaction dropped."""
    for file in files:
        Path(file).unlink(missing_ok=True)


def _drop_with_computed(wh: Warehouse, con: duckdb.DuckDBPyConnection | None, key: dict[str, str], statement: str,
                        **params: str) -> list[Path]:
    """Run `statement` (dropping an SAE's or a corpus's own rows) after dropping everything computed from
    its activations: partitions, correlation and match runs, explanations. Returns the partition files;
    without `con` it runs in a transaction of its own and deletes them after the commit."""
    with wh.writing(con) as c:
        files = wh.partitions.drop(c, **key)
        wh.correlations.drop_runs(c, **key)
        wh.matches.drop_runs(c, **key)
        wh.explanations.drop_for(c, **key)
        run(c, statement, **params)
    if con is None:
        remove_files(files)
    return files


class Table:
    """One catalog table: sqlite-utils' verbs over its key, with errors that say what to do."""

    name: str
    key: tuple[str, ...]
    what: str = "row"
    listing: str = ""
    json_fields: tuple[str, ...] = ()

    def __init__(self, wh: Warehouse):
        self.wh = wh

    def _arrow(self, name: str, /, con: duckdb.DuckDBPyConnection | None = None, **params: Any) -> pa.Table:
        with self.wh.reading(con) as c:
            return queries.arrow(c, name, **params)

    def _records(self, name: str, /, con: duckdb.DuckDBPyConnection | None = None, **params: Any) -> list[dict]:
        with self.wh.reading(con) as c:
            return queries.rows(run(c, name, **params))

    def _mapping(self, name: str, /, **params: Any) -> dict:
        """A two-column named query's rows as {first: second}, in its order."""
        with self.wh.reading() as c:
            return dict(run(c, name, **params).fetchall())

    def _value(self, name: str, /, con: duckdb.DuckDBPyConnection | None = None, **params: Any):
        with self.wh.reading(con) as c:
            row = run(c, name, **params).fetchone()
        return None if row is None else row[0]

    def _where_key(self) -> str:
        return " AND ".join(f"{c} = ?" for c in self.key)

    def _decode(self, record: dict) -> dict:
        for field in self.json_fields:
            if field in record:
                record[field] = json.loads(record[field]) if record[field] else {}
        return record

    def rows_where(self, where: str = "true", params: Sequence = (), *, select: str = "*", order_by: str | None = None,
                   con: duckdb.DuckDBPyConnection | None = None) -> list[dict]:
        order = f" ORDER BY {order_by}" if order_by else ""
        with self.wh.reading(con) as c:
            return [self._decode(r) for r in queries.rows(c.execute(f"SELECT {select} FROM {self.name} WHERE {where}{order}", list(params)))]

    def exists(self, *key, con: duckdb.DuckDBPyConnection | None = None) -> bool:
        with self.wh.reading(con) as c:
            return c.execute(f"SELECT 1 FROM {self.name} WHERE {self._where_key()}", list(key)).fetchone() is not None

    def get(self, *key, con: duckdb.DuckDBPyConnection | None = None) -> dict:
        rows = self.rows_where(self._where_key(), key, con=con)
        if not rows:
            shown = key[0] if len(key) == 1 else key
            raise FeatstoreError(f"unknown {self.what} {shown!r}; see `{self.listing}`")
        return rows[0]

    def insert(self, record: dict, con: duckdb.DuckDBPyConnection) -> None:
        values = [_json(v) if k in self.json_fields else v for k, v in record.items()]
        marks = ", ".join("?" for _ in record)
        con.execute(f"INSERT INTO {self.name} ({', '.join(record)}) VALUES ({marks})", values)

    def insert_arrow(self, rows: pa.Table, con: duckdb.DuckDBPyConnection, **constants: Any) -> None:
        """Insert an Arrow table's columns, plus `constants` as columns of every row."""
        view = f"new_{self.name}"
        con.register(view, rows)
        try:
            columns = [*constants, *rows.column_names]
            select = ", ".join([*("?" for _ in constants), *rows.column_names])
            con.execute(f"INSERT INTO {self.name} ({', '.join(columns)}) SELECT {select} FROM {view}", list(constants.values()))
        finally:
            con.unregister(view)

    def delete_where(self, where: str, params: Sequence, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DELETE FROM {self.name} WHERE {where}", list(params))

    def update(self, key: Sequence, values: dict, con: duckdb.DuckDBPyConnection) -> None:
        sets = ", ".join(f"{c} = ?" for c in values)
        params = [_json(v) if c in self.json_fields else v for c, v in values.items()]
        con.execute(f"UPDATE {self.name} SET {sets} WHERE {self._where_key()}", [*params, *key])

    def merge_metrics(self, key: str, metrics: dict) -> None:
        """Add or overwrite keys of the row's `metrics` JSON in one transaction."""
        with self.wh.transaction() as con:
            merged = {**self.get(key, con=con)["metrics"], **metrics}
            self.update([key], {"metrics": merged}, con)


# -- corpora, tokenizers -----------------------------------------------------------------------------


class Tokenizers(Table):
    name, key, what = "tokenizers", ("fingerprint",), "tokenizer"

    def record(self, con: duckdb.DuckDBPyConnection, fingerprint: str, name: str, vocab: pa.Table) -> str:
        """Insert a tokenizer and its vocabulary (token_id, token, text) once per fingerprint."""
        if not self.exists(fingerprint, con=con):
            self.insert({"fingerprint": fingerprint, "name": name, "vocab_size": vocab.num_rows}, con)
            run_arrow(con, "corpora/insert_vocab", vocab=vocab, tokenizer=fingerprint)
        return fingerprint


class Corpora(Table):
    """`corpora` with its `documents` and `tokens`; a corpus owns the tok range it was given."""

    name, key, what, listing, json_fields = "corpora", ("name",), "corpus", "featstore corpora", ("meta",)

    def next_tok_start(self, con: duckdb.DuckDBPyConnection) -> int:
        """The first tok after every corpus ever stored, so a tok id is never reused."""
        return run(con, "corpora/next_tok_start").fetchone()[0]

    def insert_slice(self, con: duckdb.DuckDBPyConnection, record: dict, documents: pa.Table, tokens: pa.Table) -> None:
        """The corpus row, its documents (doc_id, n_tokens, origin) and tokens (seq, doc_id, pos, token_id)."""
        self.insert(record, con)
        run_arrow(con, "corpora/insert_documents", documents=documents, corpus=record["name"])
        run_arrow(con, "corpora/insert_tokens", tokens=tokens, corpus=record["name"], tok_start=record["tok_start"])

    def drop(self, name: str, con: duckdb.DuckDBPyConnection | None = None) -> list[Path]:
        """The corpus, its tokens and documents, and everything computed on it; returns files to delete."""
        return _drop_with_computed(self.wh, con, {"corpus": name}, "corpora/drop", corpus=name)

    def list(self) -> pa.Table:
        return self._arrow("corpora/list")

    def document_lengths(self, name: str) -> pa.Table:
        return self._arrow("corpora/document_lengths", corpus=name)

    def document_starts(self, name: str) -> pa.Table:
        """(doc_id, start tok, n_tokens) of every document: the map from (doc_id, pos) to tok."""
        return self._arrow("corpora/document_starts", corpus=name)

    def token_block(self, name: str, lo: int, hi: int) -> pa.Table:
        return self._arrow("corpora/token_block", corpus=name, lo=lo, hi=hi)

    def has_tokens(self, name: str, con: duckdb.DuckDBPyConnection | None = None) -> bool:
        return self._value("corpora/has_tokens", con, corpus=name)

    def names_with_tokenizer(self, fingerprint: str | None) -> list[str]:
        return [r["name"] for r in self.rows_where("tokenizer = ?", [fingerprint], select="name", order_by="name")]


# -- models, lineage, SAEs ---------------------------------------------------------------------------


class Models(Table):
    """`models` and `lineage`: a model row with its parent edges (in merge order)."""

    name, key, what, listing, json_fields = "models", ("name",), "model", "featstore models", ("hyperparams", "metrics")

    def get(self, name: str, con: duckdb.DuckDBPyConnection | None = None) -> dict:
        with self.wh.reading(con) as c:
            model = super().get(name, con=c)
            model["parents"] = self.parents(name, con=c)
        model["path"] = self.wh.resolve(model["path"])  # stored relative to the warehouse when inside it
        return model

    def parents(self, name: str, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        with self.wh.reading(con) as c:
            return [r[0] for r in run(c, "models/parents", name=name).fetchall()]

    def replace(self, con: duckdb.DuckDBPyConnection, record: dict, parents: Sequence[str], relation: str | None,
                merge_method: str | None, merge_t: float | None) -> None:
        """Write the model row and its lineage edges, replacing an earlier registration (its SAEs stay)."""
        run(con, "models/drop_row", name=record["name"])
        self.insert(record, con)
        for order, parent in enumerate(parents):
            run(con, "models/insert_lineage", parent=parent, child=record["name"], relation=relation, parent_order=order,
                merge_method=merge_method, merge_t=merge_t)

    def list(self) -> pa.Table:
        return self._arrow("models/list")

    def lineage(self) -> pa.Table:
        return self._arrow("models/lineage")

    def common_parent(self, a: str, b: str) -> str | None:
        """The model both `a` and `b` descend from directly, if any."""
        return self._value("models/common_parent", a=a, b=b)


class Saes(Table):
    name, key, what, listing, json_fields = "saes", ("id",), "SAE", "featstore saes", ("metrics",)

    def get(self, sae_id: str, con: duckdb.DuckDBPyConnection | None = None) -> dict:
        sae = super().get(sae_id, con=con)
        sae["path"] = self.wh.resolve(sae["path"])  # stored relative to the warehouse when inside it
        return sae

    def primary(self, model: str) -> dict:
        """The SAE that stands for `model` (the last one registered as primary)."""
        rows = self.rows_where("model = ? AND is_primary", [model], select="id")
        if not rows:
            raise FeatstoreError(f"model {model!r} has no SAE; train one or register one with `featstore sae add`")
        return self.get(rows[0]["id"])

    def has_primary(self, model: str) -> bool:
        return bool(self.rows_where("model = ? AND is_primary", [model], select="id"))

    def replace(self, con: duckdb.DuckDBPyConnection, record: dict, *, replace: bool) -> list[Path]:
        """Insert an SAE; an existing one is dropped first with everything computed from its weights.

        A primary SAE demotes the model's others. Returns the files to delete once `con` commits.
        """
        stale: list[Path] = []
        if self.exists(record["id"], con=con):
            if not replace:
                raise FeatstoreError(f"SAE {record['id']!r} already exists; use --replace to re-register it")
            stale = self.drop(record["id"], con)
        if record.get("is_primary", True):
            run(con, "saes/demote_primary", model=record["model"])
        self.insert(record, con)
        return stale

    def add_drift(self, con: duckdb.DuckDBPyConnection, sae: str, drift: pa.Table) -> None:
        """The sae_drift rows (feature, decoder_cosine, encoder_cosine) of a lineage-initialised SAE."""
        run_arrow(con, "saes/insert_drift", drift=drift, sae=sae)

    def drop(self, sae: str, con: duckdb.DuckDBPyConnection | None = None) -> list[Path]:
        """The SAE and everything computed from it: partitions, correlation and match runs (either side),
        explanation samples, explanations, scores and simulations (transfer rows naming it on either side),
        and for a crosscoder the crosscoder evidence of its two models; returns the partition files to delete."""
        with self.wh.writing(con) as c:
            for row in self.wh.crosscoders.rows_where("sae = ?", [sae], con=c):
                self.wh.crosscoders.drop_evidence(c, row["parent_model"], row["child_model"])
            files = _drop_with_computed(self.wh, c, {"sae": sae}, "saes/drop_row", id=sae)
        if con is None:
            remove_files(files)
        return files

    def list(self) -> pa.Table:
        return self._arrow("saes/list")


class Crosscoders(Table):
    """`crosscoders` and `crosscoder_latents`: which two models a crosscoder (an SAE row) reads, and its latents."""

    name, key, what, listing = "crosscoders", ("sae",), "crosscoder", "featstore sql \"SELECT * FROM crosscoders\""

    def add(self, con: duckdb.DuckDBPyConnection, record: dict, latents: pa.Table) -> None:
        """Insert a crosscoder (its SAE row already in) with its latents; evidence from older crosscoders of
        the same two models is dropped."""
        self.drop_evidence(con, record["parent_model"], record["child_model"])
        self.insert(record, con)
        run_arrow(con, "crosscoders/insert_latents", latents=latents, sae=record["sae"])

    def drop_evidence(self, con: duckdb.DuckDBPyConnection, parent: str, child: str) -> None:
        run(con, "crosscoders/drop_evidence", parent=parent, child=child)

    def for_models(self, parent: str, child: str, hook: str) -> str | None:
        """The id of the crosscoder of `parent` and `child` at `hook` that gives their evidence (the newest
        BatchTopK one, else the newest L1 one), or None."""
        return self._value("crosscoders/for_models", parent=parent, child=child, hook=hook)

    def latents(self, sae: str) -> pa.Table:
        return self._arrow("crosscoders/latents", sae=sae)


# -- activation partitions ---------------------------------------------------------------------------


class Partitions(Table):
    """Catalog rows of the Parquet partitions; the files themselves are written by `Warehouse.write_partition` and `publish_parts`."""

    name, key, what, listing = "activation_partitions", ("sae", "corpus"), "partition", "featstore sql \"SELECT * FROM activation_partitions\""

    def get(self, sae: str, corpus: str, con: duckdb.DuckDBPyConnection | None = None) -> dict:
        rows = self.rows_where(self._where_key(), [sae, corpus], con=con)
        if not rows:
            raise FeatstoreError(
                f"no activations for SAE {sae!r} on corpus {corpus!r}; run `featstore ingest` or `featstore import-activations` first"
            )
        return rows[0]

    def corpora_of(self, sae: str, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        return [r["corpus"] for r in self.rows_where("sae = ?", [sae], select="corpus", order_by="corpus", con=con)]

    def shared_corpora(self, sae_a: str, sae_b: str, con: duckdb.DuckDBPyConnection | None = None) -> list[str]:
        with self.wh.reading(con) as c:
            return sorted(set(self.corpora_of(sae_a, con=c)) & set(self.corpora_of(sae_b, con=c)))

    def stored_on_tokenizer(self, sae: str, tokenizer: str | None) -> dict[str, bool]:
        """Every corpus slice of `tokenizer` -> whether `sae` has a partition covering it (`ingest` skips those)."""
        return self._mapping("partitions/tokenizer_slices", sae=sae, tokenizer=tokenizer)

    def drop(self, con: duckdb.DuckDBPyConnection, *, sae: str | None = None, corpus: str | None = None) -> list[Path]:
        """Remove the partitions of an SAE and/or a corpus inside `con`; returns their files, to delete after commit."""
        rows = run(con, "partitions/of", sae=sae, corpus=corpus).fetchall()
        return [path for s, c in rows for path in self.wh.drop_partition(con, s, c)]


# -- correlation runs --------------------------------------------------------------------------------


class CorrelationRuns(Table):
    """`correlation_runs` with their pairs (`correlations`) and `best_matches`."""

    name, key, what = "correlation_runs", ("id",), "correlation run"

    def store(self, con: duckdb.DuckDBPyConnection, run_key: dict, *, r_floor: float, n_tokens: int, seconds: float,
              min_cofiring: int | None, engine: str, pairs: str, best: dict[str, str]) -> int:
        """Write one run from work tables (`pairs`: feature_a, feature_b, r; `best[side]`: feature, match, r),
        replacing an earlier run of the same (sae_a, sae_b, corpus, stat); returns its id."""
        how = {"r_floor": r_floor, "n_tokens": n_tokens, "seconds": seconds, "min_cofiring": min_cofiring, "engine": engine}
        n_pairs = con.execute(f"SELECT count(*) FROM {pairs}").fetchone()[0]
        old = run(con, "correlation/run_id", **run_key).fetchone()
        if old:
            run_id = old[0]
            self.drop_rows(con, run_id)
            run(con, "correlation/update_run", id=run_id, n_pairs=n_pairs, **how)
        else:
            run_id = run(con, "correlation/next_run_id").fetchone()[0]
            self.insert({"id": run_id, **run_key, "n_pairs": n_pairs, **how}, con)
        con.execute(f"INSERT INTO correlations SELECT ?, feature_a, feature_b, r FROM {pairs}", [run_id])
        for side, table in best.items():
            con.execute(f"INSERT INTO best_matches SELECT ?, ?, feature, match, r FROM {table}", [run_id, side])
        return run_id

    def drop_rows(self, con: duckdb.DuckDBPyConnection, run_id: int) -> None:
        """A run's pairs and best matches (the run row stays)."""
        run(con, "correlation/drop_rows", id=run_id)

    def drop_runs(self, con: duckdb.DuckDBPyConnection, *, sae: str | None = None, corpus: str | None = None) -> None:
        """Every run naming `sae` on either side and/or on `corpus`, with its pairs and best matches."""
        run(con, "correlation/drop_runs", sae=sae, corpus=corpus)

    def stored_on_shared(self, sae_a: str, sae_b: str, stat: str, r_floor: float, min_cofiring: int | None) -> dict[str, bool]:
        """Every corpus slice both SAEs have partitions on -> whether it holds a run of these parameters newer than
        both partitions (`correlate` skips those)."""
        return self._mapping("correlation/shared_slices", sae_a=sae_a, sae_b=sae_b, stat=stat, r_floor=r_floor,
                             min_cofiring=min_cofiring)

    def between(self, sae_a: str, sae_b: str, stat: str, corpora: Sequence[str]) -> int:
        """How many of `corpora` have a run of (sae_a, sae_b, stat)."""
        return self._value("correlation/count_between", sae_a=sae_a, sae_b=sae_b, stat=stat, corpora=list(corpora))


class MatchRuns(Table):
    """`match_runs` with their candidate pairs (`match_pairs`) and causal checks (`causal_effects`), and the
    one-to-one `match_assignments`.

    A run's key is (sae_a, sae_b, corpus, method) in either orientation; corpus is NULL for weight methods.
    """

    name, key, what = "match_runs", ("id",), "match run"

    def drop_run(self, con: duckdb.DuckDBPyConnection, key: dict) -> None:
        """The run of `key` in either orientation, with its pairs and causal checks."""
        run(con, "matching/drop_run", **key)

    def new_run(self, con: duckdb.DuckDBPyConnection, key: dict, *, top_k: int | None, floor: float) -> int:
        """Replace the run of `key` (and its pairs) by an empty one; returns its id."""
        self.drop_run(con, key)
        run_id = run(con, "matching/next_run_id").fetchone()[0]
        self.insert({"id": run_id, **key, "top_k": top_k, "floor": floor, "n_pairs": 0}, con)
        return run_id

    def add_pairs(self, con: duckdb.DuckDBPyConnection, run_id: int, pairs: pa.Table) -> None:
        """Candidate pairs (feature_a, feature_b, score) of a run."""
        run_arrow(con, "matching/insert_pairs", pairs=pairs, run_id=run_id)

    def add_effects(self, con: duckdb.DuckDBPyConnection, run_id: int, match_method: str, effects: pa.Table) -> None:
        """The causal_effects rows of a causal run, its pairs chosen from `match_method`'s best matches."""
        run_arrow(con, "matching/insert_effects", effects=effects, run_id=run_id, match_method=match_method)

    def finish(self, con: duckdb.DuckDBPyConnection, run_id: int, seconds: float) -> int:
        """Record a run's pair count and time; returns the count."""
        n_pairs = run(con, "matching/count_pairs", run_id=run_id).fetchone()[0]
        self.update([run_id], {"n_pairs": n_pairs, "seconds": seconds}, con)
        return n_pairs

    def assign(self, con: duckdb.DuckDBPyConnection, key: dict, picked: pa.Table) -> None:
        """Replace the one-to-one assignment of `key` by `picked` (feature_a, feature_b, score)."""
        run(con, "matching/drop_assignments", **key)
        run_arrow(con, "matching/insert_assignments", picked=picked, sae_a=key["sae_a"], sae_b=key["sae_b"],
                  corpus=key["corpus"], method=key["method"])

    def between(self, sae_a: str, sae_b: str, method: str, corpora: Sequence[str]) -> int:
        """How many of `corpora` have a run of (sae_a, sae_b, method)."""
        return self._value("matching/count_between", sae_a=sae_a, sae_b=sae_b, method=method, corpora=list(corpora))

    def methods_by_slice(self, sae_a: str, sae_b: str, top_k: int) -> dict[str | None, list[str]]:
        """The weights (None) and every corpus slice both SAEs have partitions on -> the methods with a run there
        (weight runs of `top_k`, corpus runs newer than both partitions): what `match` skips."""
        return self._mapping("matching/slice_methods", sae_a=sae_a, sae_b=sae_b, top_k=top_k)

    def drop_runs(self, con: duckdb.DuckDBPyConnection, *, sae: str | None = None, corpus: str | None = None) -> None:
        """Every run and assignment naming `sae` on either side and/or on `corpus`."""
        run(con, "matching/drop_runs", sae=sae, corpus=corpus)


# -- explanations, scores, the LLM cache -------------------------------------------------------------


class Explanations(Table):
    """`explanation_samples` and `explanations` of (sae, corpus, feature)."""

    name, key, what = "explanations", ("sae", "corpus", "feature", "explainer", "prompt_version"), "explanation"

    def drop_for(self, con: duckdb.DuckDBPyConnection, *, sae: str | None = None, corpus: str | None = None) -> None:
        """Samples, explanations, scores and simulations of an SAE (scores that use its explanations too)
        and/or of a corpus."""
        run(con, "explanations/drop_for", sae=sae, corpus=corpus)

    def sampled(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, features: list[int]) -> set[int]:
        return {r[0] for r in run(con, "explanations/sampled", sae=sae, corpus=corpus, features=features).fetchall()}

    def draw_samples(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, features: list[int], seed: int) -> None:
        run(con, "explanations/draw_samples", sae=sae, corpus=corpus, features=features, seed=seed)

    def samples(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, features: list[int],
                kind_order: list[str]) -> list[tuple]:
        return run(con, "explanations/samples", sae=sae, corpus=corpus, features=features, kinds=kind_order).fetchall()

    def explained(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, explainer: str, version: str) -> set[int]:
        return {r[0] for r in run(con, "explanations/explained", sae=sae, corpus=corpus, explainer=explainer,
                                  version=version).fetchall()}

    def texts(self, con: duckdb.DuckDBPyConnection, corpus: str, explainer: str, version: str) -> dict[tuple[str, int], str]:
        return {(sae, f): text for sae, f, text in run(con, "explanations/texts", corpus=corpus, explainer=explainer,
                                                       version=version).fetchall()}

    def latest_version(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str, explainer: str) -> str | None:
        return run(con, "explanations/latest_version", sae=sae, corpus=corpus, explainer=explainer).fetchone()[0]

    def listing(self, sae: str, corpus: str, explainer: str, features: list[int]) -> pa.Table:
        """Up to 200 of the explanations of `features`, for printing."""
        return self._arrow("explanations/listing", sae=sae, corpus=corpus, explainer=explainer, features=features)


class Scores(Table):
    """`scores` with their `simulations`."""

    name, key, what = "scores", ("id",), "score"

    def scored(self, con: duckdb.DuckDBPyConnection, corpus: str, explainer: str, explainer_version: str,
               simulator: str, simulator_version: str) -> set[tuple]:
        return set(run(con, "scores/scored", corpus=corpus, explainer=explainer, explainer_version=explainer_version,
                       simulator=simulator, simulator_version=simulator_version).fetchall())

    def add(self, con: duckdb.DuckDBPyConnection, record: dict, simulations: pa.Table) -> int:
        """One score row and the simulated examples it was computed from; returns the score's id."""
        score_id = run(con, "scores/next_id").fetchone()[0]
        self.insert({"id": score_id, **record}, con)
        run_arrow(con, "scores/insert_simulations", simulations=simulations, score_id=score_id)
        return score_id

    def mean(self, **where: Any) -> float | None:
        """Mean score of the rows matching `where` (column = value; a list value means one of)."""
        clauses = [f"list_contains(?, {c})" if isinstance(v, list) else f"{c} = ?" for c, v in where.items()]
        with self.wh.reading() as con:
            return con.execute(f"SELECT avg(score) FROM scores WHERE {' AND '.join(clauses)}", list(where.values())).fetchone()[0]

    def features(self, **where: Any) -> list[int]:
        clauses = " AND ".join(f"{c} = ?" for c in where)
        return sorted(r["feature"] for r in self.rows_where(clauses, list(where.values()), select="feature"))

    def has_self_scores(self, sae: str) -> bool:
        return bool(self.rows_where("sae = ? AND kind = 'self'", [sae], select="id"))

    def summary(self, sae: str, corpus: str) -> pa.Table:
        return self._arrow("scores/summary", sae=sae, corpus=corpus)

    def transfer_listing(self, parent_sae: str, child_sae: str, corpus: str, simulator: str) -> pa.Table:
        return self._arrow("scores/transfer_listing", parent_sae=parent_sae, child_sae=child_sae, corpus=corpus,
                             simulator=simulator)


class LlmCache(Table):
    name, key, what = "llm_cache", ("prompt_hash",), "cached reply"

    def lookup(self, con: duckdb.DuckDBPyConnection, keys: list[str]) -> list[tuple]:
        return run(con, "explanations/cache_lookup", keys=keys).fetchall()

    def add(self, con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
        """(prompt_hash, backend, task, request, result, prompt_tokens, completion_tokens) rows; known hashes are kept."""
        con.executemany(queries.sql("explanations/cache_add"), rows)


# -- the model zoo and the pipeline ------------------------------------------------------------------


class MergeSweeps(Table):
    name, key, what = "merge_sweep", ("model_a", "model_b", "method"), "merge sweep"

    def replace(self, a: str, b: str, method: str, rows: pa.Table) -> None:
        with self.wh.transaction() as con:
            self.delete_where(self._where_key(), [a, b, method], con)
            self.insert_arrow(rows, con)

    def monotone(self, a: str, b: str, method: str) -> dict[str, bool]:
        """Per eval set, whether the merge's accuracy moves the expected way (view merge_sweep_monotone)."""
        rows = self._records("models/sweep_monotone", model_a=a, model_b=b, method=method)
        return {r["eval_set"]: r["monotone"] for r in rows}


class PipelineSteps(Table):
    name, key, what = "pipeline_steps", ("step",), "pipeline step"

    def recorded(self) -> dict[str, tuple]:
        """step -> (input_hash, status, summary) of every step run so far."""
        with self.wh.reading() as con:
            rows = run(con, "pipeline/recorded").fetchall()
        return {step: (digest, status, json.loads(summary) if summary else {}) for step, digest, status, summary in rows}

    def start(self, step: str, input_hash: str, preset: str, params: dict) -> None:
        """Record a step as `running` before it runs: a killed run leaves it so, and it is redone."""
        with self.wh.transaction() as con:
            run(con, "pipeline/start", step=step, input_hash=input_hash, preset=preset,
                params=json.dumps(params, sort_keys=True, default=str))

    def finish(self, step: str, summary: dict, seconds: float) -> None:
        with self.wh.transaction() as con:
            run(con, "pipeline/finish", step=step, summary=json.dumps(summary, default=str), seconds=seconds)
