"""Import sparse activations computed elsewhere (another SAE library, another machine) as a partition.

The file is checked in full before anything is written (one streaming DuckDB pass over it, in a
private in-memory database), then streamed into `Warehouse.write_partition`, which commits atomically:
a bad or interrupted import leaves the warehouse as it was, and rerunning replaces the partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from featstore.errors import FeatstoreError
from featstore.models.catalog import get_model
from featstore.saes.catalog import get_sae
from featstore.text.slices import get_corpus
from featstore.warehouse import Warehouse, queries
from featstore.warehouse.queries import run

LAYOUTS = {"tok": ("tok", "feature", "act"), "doc_pos": ("doc_id", "pos", "feature", "act")}
BATCH_ROWS = 1 << 20


def import_activations(
    wh: Warehouse, sae_id: str, corpus: str, file: str | Path, *, batch_rows: int = BATCH_ROWS
) -> dict:
    """Store FILE's activations as the (sae_id, corpus) partition; returns counts of what was read and kept.

    FILE has columns `tok, feature, act` (tok ids of this corpus) or `doc_id, pos, feature, act`
    (mapped to tok through the corpus's documents: tok = tok_start + tokens before doc_id + pos).
    Rows with act <= 0 are dropped: they are the implicit zeros of the sparse format.
    """
    sae = get_sae(wh, sae_id)
    slice_ = get_corpus(wh, corpus)
    if get_model(wh, sae["model"])["tokenizer"] != slice_["tokenizer"]:
        raise FeatstoreError(
            f"SAE {sae_id!r} belongs to a model whose tokenizer differs from corpus {corpus!r}'s; its activations cannot be keyed on these tokens"
        )
    file = Path(file)
    layout = _layout(file)
    con = duckdb.connect()
    try:
        con.register("docs", wh.corpora.document_starts(corpus))
        try:
            con.read_parquet(str(file)).create_view("import_file")
            run(con, f"import/rows_{layout}")
            n_read, n_kept = _validate(con, layout, sae["d_sae"], slice_)
        except duckdb.Error as exc:  # e.g. a uint64 tok beyond BIGINT, a corrupt page
            raise FeatstoreError(f"cannot read {file}: {str(exc).splitlines()[0]}") from exc
        # In tok order like an ingest's partitions: the writer's delta encoding of tok relies on it.
        reader = queries.reader(con, "import/positive_rows", batch_rows)
        path = wh.write_partition(
            sae_id, corpus, _with_progress(reader, n_kept), n_tokens=slice_["n_tokens"], origin="import"
        )
    finally:
        con.close()
    return {"sae": sae_id, "corpus": corpus, "path": str(path), "rows_read": n_read,
            "rows_written": n_kept, "rows_dropped_nonpositive": n_read - n_kept}


def _with_progress(batches: Iterable[pa.RecordBatch], total: int) -> Iterator[pa.RecordBatch]:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit="act", unit_scale=True, desc="import") as bar:
        for batch in batches:
            yield batch
            bar.update(batch.num_rows)


def _layout(file: Path) -> str:
    """Which of the two accepted column layouts FILE has; FeatstoreError for anything else."""
    if not file.is_file():
        raise FeatstoreError(f"{file} does not exist; give a Parquet file of sparse activations")
    try:
        schema = pq.read_schema(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FeatstoreError(f"{file} is not a readable Parquet file: {str(exc).splitlines()[0]}") from exc
    names = set(schema.names)
    layout = "tok" if "tok" in names else "doc_pos"
    missing = [c for c in LAYOUTS[layout] if c not in names]
    if missing:
        raise FeatstoreError(
            f"{file} lacks column(s) {', '.join(missing)} (has {', '.join(schema.names)}); "
            "give columns tok, feature, act or doc_id, pos, feature, act"
        )
    for column in LAYOUTS[layout]:
        kind = schema.field(column).type
        wanted = pa.types.is_floating if column == "act" else pa.types.is_integer
        if not wanted(kind):
            raise FeatstoreError(
                f"{file}: column {column} has type {kind}, expected {'a float' if column == 'act' else 'an integer'} type"
            )
    return layout


def _validate(con: duckdb.DuckDBPyConnection, layout: str, d_sae: int, corpus: dict) -> tuple[int, int]:
    """Count every kind of bad row of import_rows (the first kind found is the error); returns (rows, rows with act > 0)."""
    lo, hi = corpus["tok_start"], corpus["tok_start"] + corpus["n_tokens"]
    keys = "doc_id, pos, feature" if layout == "doc_pos" else "tok, feature"
    [(n_rows, n_positive, nulls, non_finite, bad_feature, bad_position)] = run(
        con, "import/check", d_sae=int(d_sae), lo=lo, hi=hi).fetchall()
    where = f"corpus {corpus['name']!r}"
    problems = [
        (nulls, "have null values; every row needs all columns"),
        (non_finite, "have NaN or infinite act; fix the activations upstream"),
        (bad_feature, f"have feature outside 0..{d_sae - 1} (the SAE's d_sae is {d_sae})"),
        (bad_position, f"point at token occurrences outside {where}" + (
            f" (tok range {lo}..{hi - 1})" if layout == "tok" else " (unknown doc_id or pos past the document's end)")),
    ]
    for count, message in problems:
        if count:
            raise FeatstoreError(f"{count} row(s) {message}")
    [(duplicates,)] = run(con, "import/duplicates").fetchall()
    if duplicates:
        raise FeatstoreError(f"{duplicates} ({keys}) key(s) appear more than once; give one row per token and feature")
    return n_rows, n_positive
