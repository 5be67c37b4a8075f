"""The warehouse: a DuckDB catalog plus engine-neutral Parquet partitions of sparse activations.

No torch here: a notebook that only queries imports this module alone. Connections are short-lived
(open, do one thing, close), because DuckDB lets one process write a file at a time: a long ingest
holds no connection while it computes, so the DuckDB shell can query in the meantime.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from featstore import schema
from featstore.errors import FeatstoreError
from featstore.storage import sort_partition

DB_FILE = "featstore.duckdb"
# Files written by the duckdb 2.x Python package must stay readable by the 1.5.x DuckDB shell.
STORAGE_VERSION = "v1.5.0"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
LOCK_WAIT_SECONDS = 30.0

ACTIVATION_SCHEMA = pa.schema(
    [("tok", pa.uint32()), ("feature", pa.uint32()), ("act", pa.float32())]
)


def default_warehouse_dir() -> Path:
    """`$FEATSTORE_WAREHOUSE`, else `./warehouse`."""
    return Path(os.environ.get("FEATSTORE_WAREHOUSE", "warehouse"))


def check_name(kind: str, name: str) -> str:
    """Names become Parquet folder names and SQL literals, so keep them plain."""
    if not NAME_PATTERN.match(name or ""):
        raise FeatstoreError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '-' (start with a letter or digit)"
        )
    return name


def sql_dir():
    """The sql/ folder: beside the package in a checkout, inside it (featstore.sql) in a wheel."""
    checkout = Path(__file__).resolve().parent.parent / "sql"
    return checkout if checkout.is_dir() else resources.files("featstore.sql")


def sql_files() -> list[tuple[str, str]]:
    """(path under sql/, text) of every table, view and macro file, in the order they are applied."""
    return schema.sql_files(sql_dir())


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Warehouse:
    """One warehouse folder: `featstore.duckdb` plus `activations/sae=…/corpus=…/part-*.parquet`."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root if root is not None else default_warehouse_dir()).resolve()
        self.db_path = self.root / DB_FILE
        self.activations_dir = self.root / "activations"
        self._migrated = False

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the schema up to date; closed on exit."""
        if read_only and not self.db_path.exists():
            with self.connect():
                pass
        con = self._open(read_only)
        try:
            if not read_only and not self._migrated:
                self._migrate(con)
                self._migrated = True
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: any exception rolls every statement back."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        self.root.mkdir(parents=True, exist_ok=True)
        config = {} if read_only else {"storage_compatibility_version": STORAGE_VERSION}
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return duckdb.connect(str(self.db_path), read_only=read_only, config=config)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise FeatstoreError(f"cannot open {self.db_path}: {str(exc).splitlines()[0]}") from exc
                if time.monotonic() > deadline:
                    raise FeatstoreError(
                        f"{self.db_path} is locked by another process; close other DuckDB sessions on it and retry"
                    ) from exc
                time.sleep(0.2)

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring the schema up to date (featstore.schema)."""
        if "activations" not in {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}:
            # Views in sql/ build on `activations`, and DuckDB binds a view when it is created.
            self._create_activations_view(con, [])
        schema.migrate(con, sql_files())

    @property
    def schema_version(self) -> str:
        """The last table migration applied, e.g. 'tables/027_saes.sql'."""
        with self.connect() as con:
            return con.execute("SELECT max(file) FROM schema_migrations WHERE file LIKE 'tables/%'").fetchone()[0]

    # -- queries ---------------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run one read query and return its result as an Arrow table (polars.from_arrow works)."""
        with self.connect() as con:
            try:
                return con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise FeatstoreError(f"query failed: {str(exc).splitlines()[0]}") from exc

    def scalar(self, sql: str, params: list | None = None):
        with self.connect() as con:
            row = con.execute(sql, params or []).fetchone()
            return None if row is None else row[0]

    # -- activation partitions -------------------------------------------------------------------

    def partition_dir(self, sae: str, corpus: str) -> Path:
        return self.activations_dir / f"sae={check_name('SAE', sae)}" / f"corpus={check_name('corpus', corpus)}"

    def partition_path(self, sae: str, corpus: str) -> Path:
        """The committed Parquet file of (sae, corpus); FeatstoreError when there is none."""
        row = self.scalar(
            "SELECT path FROM activation_partitions WHERE sae = ? AND corpus = ?", [sae, corpus]
        )
        if row is None:
            raise FeatstoreError(
                f"no activations for SAE {sae!r} on corpus {corpus!r}; run `featstore ingest` or `featstore import-activations` first"
            )
        return Path(row)

    def write_partition(
        self,
        sae: str,
        corpus: str,
        batches: Iterable[pa.RecordBatch | pa.Table],
        n_tokens: int,
        origin: str,
        act_dtype: str = "float32",
    ) -> Path:
        """Write sparse activations (tok, feature, act) for one (SAE, corpus) and commit them.

        Stored sorted by (feature, tok) (featstore.storage); `act_dtype` declares the precision the
        caller rounded act to (float32, bfloat16, float16), recorded in the file's footer.

        The file is written under a fresh name, then the catalog row and the `activations` view are
        switched to it in one transaction, then the old file is removed. A crash at any point leaves
        either the old partition or the new one visible, never a half-written file; rerunning replaces.
        """
        folder = self.partition_dir(sae, corpus)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"part-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".{final.name}.tmp"
        n_rows = 0
        try:
            # tok ascends (delta encoding ~0 B), feature is dictionary-coded, act's bytes are split by
            # significance so zstd finds the exponents: about 5.1 B per activation, 6.2 with defaults
            with pq.ParquetWriter(tmp, ACTIVATION_SCHEMA, compression="zstd", use_dictionary=["feature"],
                                  column_encoding={"tok": "DELTA_BINARY_PACKED", "act": "BYTE_STREAM_SPLIT"}) as writer:
                for batch in batches:
                    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
                    table = table.select(["tok", "feature", "act"]).cast(ACTIVATION_SCHEMA)
                    writer.write_table(table)
                    n_rows += table.num_rows
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            sort_partition(tmp, act_dtype)
            os.replace(tmp, final)
            with self.transaction() as con:
                old = con.execute(
                    "SELECT path FROM activation_partitions WHERE sae = ? AND corpus = ?", [sae, corpus]
                ).fetchone()
                con.execute("DELETE FROM activation_partitions WHERE sae = ? AND corpus = ?", [sae, corpus])
                from featstore.db import run

                run(con, "partitions/insert", sae=sae, corpus=corpus, path=str(final), n_rows=n_rows,
                    n_tokens=n_tokens, bytes=final.stat().st_size, origin=origin)
                self._refresh_activations_view(con)
        except BaseException:
            tmp.unlink(missing_ok=True)
            final.unlink(missing_ok=True)
            raise
        if old and Path(old[0]) != final:
            Path(old[0]).unlink(missing_ok=True)
        self._sweep_orphans(folder, keep=final)
        return final

    def drop_partition(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str | None = None) -> list[Path]:
        """Remove catalog rows (inside the caller's transaction); returns files to delete after commit."""
        where, params = ("sae = ?", [sae]) if corpus is None else ("sae = ? AND corpus = ?", [sae, corpus])
        paths = [Path(r[0]) for r in con.execute(f"SELECT path FROM activation_partitions WHERE {where}", params).fetchall()]
        con.execute(f"DELETE FROM activation_partitions WHERE {where}", params)
        self._refresh_activations_view(con)
        return paths

    @staticmethod
    def _sweep_orphans(folder: Path, keep: Path) -> None:
        """Delete files left by runs killed before their commit."""
        for path in folder.iterdir():
            if path != keep and (path.name.startswith(".part-") or path.name.startswith("part-")):
                path.unlink(missing_ok=True)

    @classmethod
    def _refresh_activations_view(cls, con: duckdb.DuckDBPyConnection) -> None:
        paths = [r[0] for r in con.execute("SELECT path FROM activation_partitions ORDER BY sae, corpus").fetchall()]
        cls._create_activations_view(con, paths)

    @staticmethod
    def _create_activations_view(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
        """`activations(sae, corpus, tok, feature, act)` over the committed files, by absolute path.

        Absolute paths make the view work from any directory in the DuckDB shell; hive partitioning
        turns the folder names into the sae and corpus columns and prunes files on filters.
        """
        if paths:
            files = "[" + ", ".join(_literal(p) for p in paths) + "]"
            body = f"SELECT sae, corpus, tok, feature, act FROM read_parquet({files}, hive_partitioning = true, hive_types_autocast = false)"
        else:
            body = "SELECT NULL::VARCHAR AS sae, NULL::VARCHAR AS corpus, NULL::UINTEGER AS tok, NULL::UINTEGER AS feature, NULL::FLOAT AS act WHERE false"
        con.execute(f"CREATE OR REPLACE VIEW activations AS {body}")
