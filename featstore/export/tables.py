"""Hand warehouse data to other tools: export any table or view to a file, run ad-hoc read-only SQL.

Exports stream record batches from a read-only connection into a temporary file that is renamed into
place only when complete, so a notebook never reads a half-written export.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, partition_files
from featstore.warehouse.queries import run, statements
from featstore.warehouse.storage import link_or_copy

FORMATS = {"parquet": "parquet", "csv": "csv", "arrow": "arrow"}
BATCH_ROWS = 65_536
LAYOUT_MARKER = "featstore-layout.txt"  # marks a folder written by export_layout, so a rerun may replace it


def relation_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """User-visible tables and views of the warehouse, sorted."""
    return [r[0] for r in run(con, "export/relations").fetchall()]


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _writer(path: Path, fmt: str, schema: pa.Schema):
    if fmt == "parquet":
        return pq.ParquetWriter(path, schema, compression="zstd")
    if fmt == "csv":
        return pacsv.CSVWriter(path, schema)
    return pa.ipc.new_file(path, schema)


def export(wh: Warehouse, name: str, fmt: str = "parquet", out_dir: str | os.PathLike | None = None) -> dict:
    """Write table or view `name` to `<out_dir>/<name>.<fmt>` (default out_dir: `<warehouse>/exports`).

    `arrow` is the Arrow IPC file format (`pyarrow.ipc.open_file`, `polars.read_ipc`).
    """
    if fmt not in FORMATS:
        raise FeatstoreError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    out = Path(out_dir) if out_dir is not None else wh.root / "exports"
    if out.exists() and not out.is_dir():
        raise FeatstoreError(f"--out {out} is a file; give a folder")
    with wh.read_only_connection() as con:
        names = relation_names(con)
        if name not in names:
            raise FeatstoreError(
                f"no table or view named {name!r}; `featstore sql \"SHOW TABLES\"` lists them"
            )
        out.mkdir(parents=True, exist_ok=True)
        final = out / f"{name}.{FORMATS[fmt]}"
        tmp = out / f".{final.name}.{os.getpid()}.tmp"
        reader = con.sql(f"SELECT * FROM {_quoted(name)}").to_arrow_reader(BATCH_ROWS)
        n_rows = 0
        try:
            with _writer(tmp, fmt, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    n_rows += batch.num_rows
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
    return {"name": name, "format": fmt, "path": str(final), "rows": n_rows, "bytes": final.stat().st_size}


def export_layout(wh: Warehouse, out_dir: str | os.PathLike) -> dict:
    """The whole warehouse as Parquet for Spark, Trino or Polars: `<out>/<table>.parquet` for every catalog
    table and the activation partitions under `<out>/activations/sae=…/corpus=…/` (hard links when the
    file system allows, else copies), with `activation_partitions.path` relative to `<out>`.

    Written into a temporary folder renamed into place when complete; an earlier layout there is replaced.
    """
    out = Path(out_dir).resolve()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / LAYOUT_MARKER).exists())):
        raise FeatstoreError(f"{out} exists and is not an engine layout; give a new or empty folder")
    tmp = out.parent / f".{out.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with wh.connect(read_only=True) as con:
            tables = [r[0] for r in run(con, "export/catalog_tables").fetchall()]
            for table in tables:
                select = statements("export/layout_partitions")[0] if table == "activation_partitions" else f"SELECT * FROM {_quoted(table)}"
                con.execute(f"COPY ({select}) TO '{tmp / f'{table}.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
            files = [(sae, corpus, file) for sae, corpus, path in run(con, "export/partition_paths").fetchall()
                     for file in partition_files(wh.root, path)]
        for sae, corpus, file in files:
            link_or_copy(file, tmp / "activations" / f"sae={sae}" / f"corpus={corpus}" / file.name)
        (tmp / LAYOUT_MARKER).write_text("written by featstore export --engine-layout; replaced by the next one\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(out), "tables": len(tables), "partition_files": len(files)}


def run_sql(wh: Warehouse, sql: str) -> pa.Table | None:
    """Run read-only SQL (`Warehouse.sql`: no writes to the catalog or to any file); the last result as Arrow."""
    if not sql.strip():
        raise FeatstoreError("empty SQL; give a query such as \"SELECT * FROM models\"")
    return wh.sql(sql)
