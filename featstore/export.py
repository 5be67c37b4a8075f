"""Hand warehouse data to other tools: export any table or view to a file, run ad-hoc read-only SQL.

Exports stream record batches from a read-only connection into a temporary file that is renamed into
place only when complete, so a notebook never reads a half-written export.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from featstore.db import run
from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse

FORMATS = {"parquet": "parquet", "csv": "csv", "arrow": "arrow"}
BATCH_ROWS = 65_536


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


def run_sql(wh: Warehouse, sql: str) -> pa.Table | None:
    """Run read-only SQL (`Warehouse.sql`: no writes to the catalog or to any file); the last result as Arrow."""
    if not sql.strip():
        raise FeatstoreError("empty SQL; give a query such as \"SELECT * FROM models\"")
    return wh.sql(sql)
