"""The warehouse: a DuckDB catalog plus engine-neutral Parquet partitions of sparse activations.

No torch here: a notebook that only queries imports this module alone. Connections are short-lived
(open, do one thing, close), because DuckDB lets one process write a file at a time: a long ingest
holds no connection while it computes, so the DuckDB shell can query in the meantime.

Paths in the catalog are relative to the warehouse folder, so a copied or moved warehouse reads and
writes only its own files. Reads use read-only connections and never create, migrate or repair
anything; a damaged or missing catalog next to existing data is refused, never replaced.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from featstore.errors import FeatstoreError
from featstore.warehouse import catalog_file, lake, schema, storage, tables
from featstore.warehouse.lake import sql_literal as _literal
from featstore.warehouse.queries import arrow, run, sql_dir, statements
from featstore.warehouse.storage import link_or_copy

DB_FILE = "featstore.duckdb"
# Files written by the duckdb 2.x Python package must stay readable by the 1.5.x DuckDB shell.
STORAGE_VERSION = "v1.5.0"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
LOCK_WAIT_SECONDS = 30.0
STAGING_DIR = ".staging"  # uncommitted partition files: outside activations/, so no glob of it sees them
STAGING_GRACE_SECONDS = 60.0  # a staged file this young may be a writer's that has not locked it yet
LOCKS_DIR = ".locks"  # one lock file per (SAE, corpus) being written
COMMIT_ATTEMPTS = 30  # a lake commit that lost to another writer's commit of other rows is retried this often
DATA_DIRS = ("activations", "models", "saes")  # their presence without a catalog means the catalog was lost
# The only statements `Warehouse.sql` runs: reads. COPY, ATTACH, EXPORT, SET, CREATE... are refused.
READ_STATEMENTS = {"SELECT", "EXPLAIN", "PRAGMA", "CALL"}
T = TypeVar("T")
_LAKE_MAINTAINED = [0]  # bumped by every `maintain` of a lake in this process: its attached instances re-attach
_WRITERS: dict[Path, list[duckdb.DuckDBPyConnection]] = {}  # this process's read-write connections per file

PART_GLOB = re.compile(r"-\*-of-(\d+)\.parquet$")  # the path of a partition of several part files


def partition_files(root: Path, stored: str) -> list[Path]:
    """The files an `activation_partitions.path` stands for, in order: the one file, or the parts its
    glob (`part-<id>-*-of-<N>.parquet`, a sharded ingest's) matches."""
    path = root / stored
    return sorted(path.parent.glob(path.name)) if "*" in path.name else [path]


def expected_files(stored: str) -> int:
    """How many files a catalog path stands for: 1, or the N its glob's name counts."""
    counted = PART_GLOB.search(stored)
    return int(counted.group(1)) if counted else 1


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


def sql_files() -> list[tuple[str, str]]:
    """(path under sql/, text) of every table, view and macro file, in the order they are applied."""
    return schema.sql_files(sql_dir())


def is_disk_full(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is ENOSPC, whichever library raised it."""
    while exc is not None:
        if getattr(exc, "errno", None) == errno.ENOSPC or "no space left on device" in str(exc).lower():
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(root: Path) -> FeatstoreError:
    return FeatstoreError(f"disk full while writing under {root}: nothing was committed; free some space and rerun")


@contextmanager
def disk_full_reported(root: Path) -> Iterator[None]:
    """Turn a full disk, whichever library hit it, into disk_full_error."""
    try:
        yield
    except BaseException as exc:
        if is_disk_full(exc) and not isinstance(exc, FeatstoreError):
            raise disk_full_error(root) from exc
        raise


def _statement_kind(statement) -> duckdb.StatementType:
    """A statement's type, looking through EXPLAIN (EXPLAIN ANALYZE runs what it explains)."""
    if statement.type is duckdb.StatementType.EXPLAIN:
        inner = duckdb.extract_statements(re.sub(r"(?is)^\s*explain\s+(analy[sz]e\s+)?", "", statement.query, count=1))
        if len(inner) == 1:
            return inner[0].type
    return statement.type


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _back_off(attempt: int) -> None:
    """A random pause before retrying a commit that lost to another writer's: up to 50 ms, doubling, at most 1 s."""
    time.sleep(random.uniform(0, min(1.0, 0.05 * 2 ** attempt)))


class _Published(Exception):
    """A sharded run's partition is in the catalog already: there is nothing to commit."""

    def __init__(self, path: Path):
        super().__init__(str(path))
        self.path = path


class Warehouse:
    """One warehouse folder: `featstore.duckdb` plus `activations/sae=…/corpus=…/part-*.parquet`."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.given_root = Path(root if root is not None else default_warehouse_dir()).absolute()
        self.root = self.given_root.resolve()
        self.db_path = self.root / DB_FILE
        self.lake = lake.Lake.load(self.root)  # None: the catalog is the DuckDB file featstore.duckdb
        self._constraints: list[lake.Constraint] | None = None
        self._lake_db: duckdb.DuckDBPyConnection | None = None  # see _lake_connection
        self._lake_lock = threading.Lock()
        self._lake_generation = 0
        self.activations_dir = self.root / "activations"
        self._migrated = False  # schema migrated and paths localised by this instance's first writer
        self._verified = False  # every block of the catalog checked by this instance's first writer
        self._schema_checked = False
        self.tokenizers = tables.Tokenizers(self)
        self.corpora = tables.Corpora(self)
        self.models = tables.Models(self)
        self.saes = tables.Saes(self)
        self.crosscoders = tables.Crosscoders(self)
        self.partitions = tables.Partitions(self)
        self.correlations = tables.CorrelationRuns(self)
        self.matches = tables.MatchRuns(self)
        self.explanations = tables.Explanations(self)
        self.scores = tables.Scores(self)
        self.llm_cache = tables.LlmCache(self)
        self.merge_sweeps = tables.MergeSweeps(self)
        self.steps = tables.PipelineSteps(self)

    def exists(self) -> bool:
        """Whether this folder holds a warehouse (a catalog file or a lake's catalog.toml)."""
        return self.lake is not None or self.db_path.exists()

    def catalog_version(self) -> tuple:
        """A value that changes whenever something commits to the catalog (e.g. a cache key for the browser)."""
        if self.lake is not None:
            with self.connect(read_only=True) as con:
                return tuple(run(con, "lake/snapshot", database=lake.ALIAS).fetchone())
        return tuple((s.st_size, s.st_mtime_ns) for s in (p.stat() for p in (self.db_path, self.wal_path) if p.exists()))

    @classmethod
    def create_lake(cls, root: str | os.PathLike, postgres: str, data_path: str | None = None) -> Warehouse:
        """A warehouse in `root` whose catalog is a DuckLake on PostgreSQL at `postgres` (a postgresql:// URL)
        and whose catalog data files go under `data_path` (default `<root>/lake`); an existing lake at that
        URL is attached, not replaced."""
        wh = cls(root)
        if not lake.URL.match(postgres or ""):
            raise FeatstoreError(f"--catalog {lake.redact(postgres)!r} is not a PostgreSQL URL; give postgres://USER@HOST:PORT/DATABASE")
        if wh.db_path.exists():
            raise FeatstoreError(f"{wh.root} already holds the file catalog {DB_FILE}; make the lake warehouse in a new folder")
        if wh.lake is not None and wh.lake.postgres != postgres:
            raise FeatstoreError(f"{wh.root} is already a lake on {wh.lake.where}; make the new one in a new folder")
        data = data_path or lake.DEFAULT_DATA_PATH
        if Path(data).is_absolute() and Path(data).resolve().is_relative_to(wh.root):
            data = Path(data).resolve().relative_to(wh.root).as_posix()
        candidate = lake.Lake(wh.root, postgres, data)
        candidate.connect().close()  # reachable, and a DuckLake is there or can be made; nothing written before
        candidate.data_dir.mkdir(parents=True, exist_ok=True)
        candidate.save()
        wh = cls(root)
        wh.create()
        return wh

    # -- connections -------------------------------------------------------------------------

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, closed on exit. Read-write ones check the catalog and bring the schema and paths up
        to date first; read-only ones change nothing and need an existing warehouse."""
        if read_only:
            con = self._open_reader()
            try:
                yield con
            finally:
                con.close()
        else:
            with self._writer() as con:
                yield con

    @contextmanager
    def _writer(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection; when the disk fills, what it did is undone where it can be (no `.wal`
        left behind) and the error says nothing was committed."""
        if self.lake is not None:
            con = self._open_lake_writer()
            try:
                yield con
            finally:
                con.close()
            return
        writers = _WRITERS.setdefault(self.db_path, [])
        outermost = not writers
        # what a full disk may undo: the outermost writer's own work, with no crashed writer's commits in the WAL
        before = self._file_state() if outermost and not self._wal_size() else None
        con = None
        try:
            con = self._open_writer()
            writers.append(con)
            yield con
            if outermost:
                con.execute("CHECKPOINT")  # a full disk fails here, not silently in close()'s own checkpoint
        except BaseException as exc:
            if con is not None:
                writers.remove(con)
                con.close()
            if is_disk_full(exc):
                self._undo_unfinished(before)
                if not isinstance(exc, FeatstoreError):
                    raise disk_full_error(self.root) from exc
            raise
        writers.remove(con)
        con.close()

    @property
    def wal_path(self) -> Path:
        return self.db_path.with_name(DB_FILE + ".wal")

    def _wal_size(self) -> int:
        """The WAL's size: above 0, it holds commits (of a crashed writer, say) that must not be dropped."""
        return self.wal_path.stat().st_size if self.wal_path.is_file() else 0

    def _file_state(self) -> tuple[int, bytes]:
        """The catalog's size and headers (0 and none for a new one)."""
        return (self.db_path.stat().st_size if self.db_path.is_file() else 0), catalog_file.headers(self.db_path)

    def _undo_unfinished(self, before: tuple[int, bytes] | None) -> None:
        """After a writer failed for lack of space: when no checkpoint reached the catalog (its headers are
        as `before`), drop the WAL of what it committed and the blocks it appended (a catalog it began, all
        of it), so the catalog is as before; else (or with no `before`) leave the files to DuckDB, which
        recovers from them."""
        if before is None:
            return
        size, headers = before
        if headers and catalog_file.headers(self.db_path) != headers:
            return
        self.wal_path.unlink(missing_ok=True)
        if not headers:
            self.db_path.unlink(missing_ok=True)
        elif self.db_path.stat().st_size > size:
            os.truncate(self.db_path, size)
        self._migrated = False  # a migration the WAL held is gone with it

    def create(self) -> None:
        """Make sure the warehouse exists (created in a new or empty folder); the first step of a writer."""
        with self.connect():
            pass

    @contextmanager
    def transaction(self, tables: tuple[str, ...] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """All-or-nothing: any exception rolls every statement back. On a lake, a commit that overlapped
        another writer's raises lake.CommitConflict, with nothing written; `tables` names the only tables
        the transaction writes, so only their constraints are checked (all when None: ~0.65 s on a lake)."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self.commit(con, tables)

    def commit(self, con: duckdb.DuckDBPyConnection, tables: tuple[str, ...] | None = None) -> None:
        """COMMIT the transaction open on `con`; on a lake, after checking the constraints its table files
        declare (DuckLake enforces none) on `tables` and the references to them (all when None), and bumping
        the guard row that serialises featstore's commits."""
        if self.lake is None:
            con.execute("COMMIT")
        else:
            lake.commit(con, [c for c in self.constraints if tables is None or c.table in tables
                              or (c.target and c.target[0] in tables)])

    @property
    def constraints(self) -> list[lake.Constraint]:
        """The keys, references and checks the table files declare (enforced in code on a lake)."""
        if self._constraints is None:
            self._constraints = lake.table_constraints([text for path, text in sql_files() if path.startswith("tables/")])
        return self._constraints

    @contextmanager
    def reading(self, con: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """The caller's connection, or a read-only one of our own."""
        if con is not None:
            yield con
        else:
            with self.connect(read_only=True) as own:
                yield own

    @contextmanager
    def writing(self, con: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """The caller's connection (its transaction), or a transaction of our own."""
        if con is not None:
            yield con
        else:
            with self.transaction() as own:
                yield own

    def read_only_connection(self) -> duckdb.DuckDBPyConnection:
        """A sandboxed read-only connection for SQL from users (`featstore sql`, export, the browser);
        close it when done (`with wh.read_only_connection() as con:`).

        A private in-memory DuckDB attaches the catalog read-only and may read only the catalog and
        the committed partition files: file access elsewhere (COPY … TO, ATTACH, read_csv of other
        files, INSTALL) fails with a permission error, and the settings are locked. COPY … TO a
        committed partition's own path is refused by `Warehouse.sql`'s statement check.
        """
        if self.lake is not None:
            con = self.lake.connect(read_only=True)  # its macros come once the file access is locked down
        else:
            self._check_catalog(creating=False)
            con = duckdb.connect(":memory:")
        try:
            if self.lake is None:
                self._retry_locked(lambda: con.execute(f"ATTACH {_literal(str(self.db_path))} AS warehouse (READ_ONLY)"))
                con.execute("USE warehouse")
            # the committed files of this very snapshot of the catalog (a writer may commit meanwhile),
            # and the globs of multi-file partitions, so read_parquet(path) works as in the DuckDB shell
            paths = [r[0] for r in run(con, "partitions/paths").fetchall()]
            files = [str(f) for path in paths for f in partition_files(self.root, path)]
            globs = [str(self.root / path) for path in paths if "*" in path]
            con.execute("SET allowed_paths = ?", [[str(self.db_path), f"{self.db_path}.wal", *files, *globs]])
            if self.lake is not None:  # the lake's own data files, wherever DuckLake placed them
                con.execute("SET allowed_directories = ?", [[str(self.lake.data_dir) + "/"]])
            con.execute("SET enable_external_access = false")
            con.execute("SET autoinstall_known_extensions = false")
            self._shadow_moved_view(con, files)
            if self.lake is not None:
                lake.create_macros(con, lake.session_macros(sql_files()))
            con.execute("SET lock_configuration = true")
        except BaseException:
            con.close()
            raise
        return con

    def _open_reader(self) -> duckdb.DuckDBPyConnection:
        writers = _WRITERS.get(self.db_path)
        if writers:  # this process has the file open read-write: DuckDB allows no second configuration
            return writers[-1].cursor()
        if self.lake is None:
            self._check_catalog(creating=False)
        if not (self._schema_checked or self._migrated):
            if self.writable() and self._schema_pending():
                with self.connect():  # a newer featstore's views and tables; nothing pending: no write
                    pass
            self._schema_checked = True
        con = self._raw_reader()
        self._shadow_moved_view(con)
        return con

    def _raw_reader(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the catalog as it is, nothing checked or shadowed."""
        if self.lake is not None:
            return self._lake_connection()
        return self._retry_locked(lambda: duckdb.connect(str(self.db_path), read_only=True))

    def _open_writer(self) -> duckdb.DuckDBPyConnection:
        reason = self.read_only_reason()
        if reason:
            raise FeatstoreError(f"warehouse {self.root} is read-only ({reason}); reads work, writes need a writable copy")
        self._check_catalog(creating=True)
        self._verify_blocks()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FeatstoreError(f"cannot create warehouse {self.root}: {exc.strerror}; pick a writable folder") from exc
        config = {"storage_compatibility_version": STORAGE_VERSION}
        con = self._retry_locked(lambda: duckdb.connect(str(self.db_path), config=config))
        try:
            if not self._migrated:
                self._migrate(con)
                self._localise_paths(con)
                self._migrated = True
        except BaseException:
            con.close()
            raise
        return con

    def _open_lake_writer(self) -> duckdb.DuckDBPyConnection:
        """A read-write connection to the lake, its schema brought up to date by this instance's first one
        (retried when another machine migrates at the same moment)."""
        reason = self.read_only_reason()
        if reason:
            raise FeatstoreError(f"warehouse {self.root} is read-only ({reason}); reads work, writes need a writable copy")
        for attempt in range(COMMIT_ATTEMPTS):
            con = self._lake_connection()
            try:
                if not self._migrated:
                    self._migrate(con)
                    self._localise_paths(con)
                    self._migrated = True
                return con
            except BaseException as exc:
                con.close()
                if not (isinstance(exc, lake.CommitConflict) or lake.is_conflict(exc)):
                    raise
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise FeatstoreError("the lake's schema kept changing under this writer; run it again") from exc
                _back_off(attempt)

    def cursor(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """A cursor of `con` for another thread, naming objects as `con` does."""
        cur = con.cursor()
        if self.lake is not None:
            cur.execute(lake.SEARCH_PATH)
        return cur

    def _lake_connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor of this instance's one DuckDB with the lake attached (attaching costs ~0.25 s; a cursor,
        whose every transaction reads the lake's latest snapshot, ~1 ms), reading this folder's files (the
        stored `activations` view names the mount of the machine that last wrote it), with this
        featstore's macros (lake.session_macros)."""
        with self._lake_lock:
            if self._lake_db is not None and self._lake_generation != _LAKE_MAINTAINED[0]:
                self._lake_db.close()  # this process maintained a lake since: DuckLake's in-process state is stale
                self._lake_db = None
            if self._lake_db is None:
                self._lake_generation = _LAKE_MAINTAINED[0]
                db = self.lake.connect()
                try:
                    self._shadow_moved_view(db)
                    lake.create_macros(db, lake.session_macros(sql_files()))
                except BaseException:
                    db.close()
                    raise
                self._lake_db = db
        cur = self._lake_db.cursor()
        cur.execute(f"USE {lake.ALIAS}")
        cur.execute(lake.SEARCH_PATH)
        self._shadow_moved_view(cur)
        return cur

    def _check_all(self, con: duckdb.DuckDBPyConnection) -> None:
        """Every declared constraint, in a transaction of its own (after a migration)."""
        con.execute("BEGIN TRANSACTION")
        lake.commit(con, self.constraints)

    def _retry_locked(self, open_):
        """Call `open_` until the file is not locked by another process (LOCK_WAIT_SECONDS at most)."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                return open_()
            except duckdb.Error as exc:
                message = _first_line(exc)
                if "different configuration" in message:
                    raise FeatstoreError(
                        f"this process already has {self.db_path} open with other settings (e.g. a read-write "
                        "duckdb.connect); close that connection or query through it"
                    ) from exc
                if is_disk_full(exc):
                    raise disk_full_error(self.root) from exc
                if "lock" not in message.lower():
                    raise self._damaged(message) from exc
                if time.monotonic() > deadline:
                    raise FeatstoreError(
                        f"{self.db_path} is locked by another process; close other DuckDB sessions on it and retry"
                    ) from exc
                time.sleep(0.2)

    def _damaged(self, problem: str) -> FeatstoreError:
        return FeatstoreError(
            f"the catalog {self.db_path} is damaged ({problem}); nothing was changed: restore featstore.duckdb "
            "from a backup or an earlier copy of the warehouse (the Parquet files are untouched)"
        )

    def _check_catalog(self, creating: bool) -> None:
        """Refuse a missing catalog beside existing data, a missing warehouse on reads, a damaged file."""
        if self.db_path.is_file():
            problem = catalog_file.problem(self.db_path)
            if problem:
                raise self._damaged(problem)
            return
        if self.db_path.exists():
            raise FeatstoreError(f"{self.db_path} is not a file; point --warehouse at a featstore warehouse folder")
        data = [d for d in DATA_DIRS if (self.root / d).is_dir() and any(not p.name.startswith(".") for p in (self.root / d).iterdir())]
        if data:
            raise FeatstoreError(
                f"{self.root} holds {', '.join(d + '/' for d in data)} but no {DB_FILE}: the catalog is missing; "
                "nothing was changed: restore featstore.duckdb from a backup (a new catalog would orphan that data)"
            )
        if not creating:
            raise FeatstoreError(
                f"no warehouse at {self.given_root} (no {DB_FILE}); check --warehouse / FEATSTORE_WAREHOUSE, "
                "or create one with a write command such as `featstore corpus add`"
            )

    def _verify_blocks(self) -> None:
        """Refuse to write into a catalog with a damaged block, checked once per instance: DuckDB itself
        notices one only when a query reads it, so a write would commit into a file that other tables (or
        their indexes) can no longer be read from. A read-only connection holds off other writers meanwhile."""
        if self._verified or _WRITERS.get(self.db_path) or not self.db_path.is_file():
            return
        reader = self._retry_locked(lambda: duckdb.connect(str(self.db_path), read_only=True))
        try:
            problem = catalog_file.problem(self.db_path, used_blocks=run(reader, "warehouse/used_blocks").fetchone()[0])
        finally:
            reader.close()
        if problem:
            raise self._damaged(problem)
        self._verified = True

    def read_only_reason(self) -> str | None:
        """Why this warehouse cannot be written (read-only file system or permissions), else None."""
        folder = self.root
        while not folder.exists():
            folder = folder.parent
        for path in (folder, self.db_path):
            if path.exists() and not os.access(path, os.W_OK):
                return f"{path} is not writable"
        return None

    def writable(self) -> bool:
        return self.read_only_reason() is None

    def _schema_pending(self) -> bool:
        """Whether sql/ holds files this warehouse has not applied (checked read-only)."""
        con = self._raw_reader()
        try:
            applied = dict(run(con, "warehouse/applied").fetchall())
        except duckdb.Error:
            return True
        finally:
            con.close()
        return any(applied.get(name) != hashlib.sha256(text.encode()).hexdigest() for name, text in sql_files())

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        """Bring the schema up to date (featstore.warehouse.schema)."""
        if "activations" not in {r[0] for r in run(con, "warehouse/view_names").fetchall()}:
            # Views in sql/ build on `activations`, and DuckDB binds a view when it is created.
            self._create_activations_view(con, [])
        if self.lake is None:
            schema.migrate(con, sql_files())
            return
        self.lake.create_guard(con)
        # each file commits through the guard; the constraints are checked once all tables exist
        applied = schema.migrate(con, sql_files(), form=lambda f: lake.object_form(f.path, f.text),
                                 commit=lambda c: lake.commit(c, []))
        if applied:
            lake.create_macros(con, lake.session_macros(sql_files()))  # those a lake behind the files could not make
            self._check_all(con)

    @property
    def schema_version(self) -> str:
        """The last table migration applied, e.g. 'tables/027_saes.sql'."""
        with self.connect() as con:
            return run(con, "warehouse/schema_version").fetchone()[0]

    # -- paths relative to the warehouse folder -------------------------------------------------

    def relative(self, path: str | os.PathLike) -> str:
        """How the catalog stores a local path: relative to the warehouse folder when inside it."""
        absolute = Path(path).expanduser().resolve()
        return absolute.relative_to(self.root).as_posix() if absolute.is_relative_to(self.root) else str(absolute)

    def resolve(self, stored: str | None) -> str | None:
        """A catalog path as an absolute one (hub ids and absolute paths pass through)."""
        if stored is None or Path(stored).is_absolute():
            return stored
        local = self.root / stored
        return str(local) if local.exists() or stored.split("/")[0] in DATA_DIRS else stored

    def _localise_paths(self, con: duckdb.DuckDBPyConnection) -> None:
        """Rewrite absolute paths of files inside this folder (an older or a copied warehouse) as
        relative ones, then rebuild the `activations` view if it was built for another folder."""
        changed = False
        con.execute("BEGIN TRANSACTION")
        for table, key, folder in (("models", "name", "models"), ("saes", "id", "saes"),
                                   ("activation_partitions", "sae, corpus", None)):
            rows = con.execute(f"SELECT path, {key} FROM {table} WHERE path LIKE '/%'").fetchall()
            for path, *ids in rows:
                local = self._local_equivalent(Path(path), folder, ids)
                if local is not None:
                    where = " AND ".join(f"{k.strip()} = ?" for k in key.split(","))
                    con.execute(f"UPDATE {table} SET path = ? WHERE {where}", [local, *ids])
                    changed = True
        try:
            rebuild = changed or (self.lake is None and self._view_root(con) != str(self.root))
            if rebuild:
                self._refresh_activations_view(con)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if rebuild:
            self.commit(con, tables=("models", "saes", "activation_partitions"))
        else:
            con.execute("ROLLBACK")  # nothing to write: no commit for other writers of a lake to conflict with

    def _local_equivalent(self, path: Path, folder: str | None, ids: list) -> str | None:
        """The relative path under this folder that an absolute catalog path stands for, if any."""
        if path.is_relative_to(self.root):
            return path.relative_to(self.root).as_posix()
        if folder is None:  # a partition of a copied warehouse: same layout here
            candidate = self.partition_dir(*ids) / path.name
        elif path.parent.name == folder:
            candidate = self.root / folder / path.name
        else:
            return None
        files = partition_files(self.root, str(candidate))
        return candidate.relative_to(self.root).as_posix() if files and all(f.exists() for f in files) else None

    def relocate(self) -> dict:
        """Bring paths and the `activations` view up to date after the folder was moved or copied."""
        self._migrated = False
        with self.connect() as con:
            n = run(con, "partitions/count").fetchone()[0]
        return {"root": str(self.root), "partitions": n}

    # -- queries ---------------------------------------------------------------------------------

    def query(self, sql: str, params: list | None = None) -> pa.Table:
        """Run one read query on a read-only connection; its result as an Arrow table (polars.from_arrow works).

        Short-lived: open, query, close, so it works while another process reads the file, and
        between the commits of a running `featstore ingest`.
        """
        with self.connect(read_only=True) as con:
            try:
                return con.sql(sql, params=params or None).to_arrow_table()
            except duckdb.Error as exc:
                raise FeatstoreError(f"query failed: {_first_line(exc)}") from exc

    def scalar(self, sql: str, params: list | None = None):
        with self.connect(read_only=True) as con:
            row = con.execute(sql, params or []).fetchone()
            return None if row is None else row[0]

    def named(self, name: str, /, **params) -> pa.Table:
        """Run the named read query `sql/queries/<name>.sql` with its `$parameters` on a read-only connection;
        its result as an Arrow table. Library code reads through this rather than `query`."""
        with self.connect(read_only=True) as con:
            return arrow(con, name, **params)

    def named_scalar(self, name: str, /, **params):
        """The first value of a named read query's first row (None when it returns no row)."""
        with self.connect(read_only=True) as con:
            row = run(con, name, **params).fetchone()
            return None if row is None else row[0]

    def sql(self, sql: str) -> pa.Table | None:
        """Run SQL from a user on `read_only_connection()`: only reading statements, no file writes."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise FeatstoreError(f"query failed: {_first_line(exc)}") from exc
        if not statements:
            raise FeatstoreError("empty SQL; give a query such as \"SELECT * FROM models\"")
        refused = sorted({_statement_kind(s).name for s in statements} - READ_STATEMENTS)
        if refused:
            raise FeatstoreError(f"{', '.join(refused)} statements are refused: this connection is read-only and writes no files")
        with self.read_only_connection() as con:
            try:
                result = None
                for statement in statements:
                    result = con.sql(statement.query)
                return None if result is None else result.to_arrow_table()
            except duckdb.Error as exc:
                hint = "; this connection is read-only and writes no files" if isinstance(exc, duckdb.PermissionException) else ""
                raise FeatstoreError(f"query failed: {_first_line(exc)}{hint}") from exc

    # -- activation partitions -------------------------------------------------------------------

    def partition_dir(self, sae: str, corpus: str) -> Path:
        return self.activations_dir / f"sae={check_name('SAE', sae)}" / f"corpus={check_name('corpus', corpus)}"

    def partition_files(self, sae: str, corpus: str) -> list[Path]:
        """The committed Parquet files of (sae, corpus), e.g. for `pyarrow.parquet.read_table`; FeatstoreError when there are none."""
        with self.connect(read_only=True) as con:
            files = self.committed_files(con, "sae = ? AND corpus = ?", [sae, corpus])
        if not files:
            raise FeatstoreError(
                f"no activations for SAE {sae!r} on corpus {corpus!r}; run `featstore ingest` or `featstore import-activations` first"
            )
        return files

    def activation_files(self, sae: str | None = None) -> list[Path]:
        """The committed partition files (absolute), e.g. for `polars.scan_parquet(wh.activation_files())`.

        Reading through this list rather than a glob of activations/ never sees a file a writer
        has renamed into place but not yet committed.
        """
        with self.connect(read_only=True) as con:
            return self.committed_files(con, "? IS NULL OR sae = ?", [sae, sae])

    def committed_files(self, con: duckdb.DuckDBPyConnection, where: str = "true", params: list | None = None) -> list[Path]:
        """The files of the partitions matching `where`, as the catalog open on `con` records them."""
        rows = con.execute(f"SELECT path FROM activation_partitions WHERE {where} ORDER BY sae, corpus", params or []).fetchall()
        return [file for (path,) in rows for file in partition_files(self.root, path)]

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

        Stored sorted by (feature, tok) (featstore.warehouse.storage); `act_dtype` declares the precision the
        caller rounded act to (float32, bfloat16, float16), recorded in the file's footer.

        The file is written in `.staging/` (outside activations/, so no reader of the folder sees it),
        then committed by `_commit_partition`. Writers of different (SAE, corpus) pairs run side by
        side; a second writer of the same pair is refused while the first runs.
        """
        self._ensure_writable()
        with disk_full_reported(self.root), self._pair_lock(sae, corpus), self._staged_file() as tmp:
            n_rows = storage.write_sorted(tmp, batches, act_dtype)
            return self._commit_partition(sae, corpus, [tmp], n_rows, n_tokens, origin, move=True)

    def publish_parts(self, sae: str, corpus: str, parts: list[Path], n_tokens: int, origin: str,
                      run_id: str | None = None) -> Path:
        """Commit complete, sorted part files (a sharded ingest's) as one partition of len(parts) files.

        The parts are hard-linked (else copied) into the partition folder, so until the commit they
        stay where they are: a publisher killed before it leaves the set whole for a rerun. The
        returned path is the glob of the parts (their one path when there is one part). With `run_id`
        (a sharded run), the run's ingest_parts rows go in the same commit, and a run already published
        (by another of its shards) is not published again: its partition's path is returned."""
        self._ensure_writable()
        with disk_full_reported(self.root), self._pair_lock(sae, corpus):
            n_rows = sum(pq.read_metadata(part).num_rows for part in parts)
            return self._commit_partition(sae, corpus, parts, n_rows, n_tokens, origin, move=False, run_id=run_id)

    def _ensure_writable(self) -> None:
        if not self.db_path.exists() or not self.writable():
            self.create()  # or refuses a read-only / damaged one

    def _commit_partition(self, sae: str, corpus: str, sources: list[Path], n_rows: int, n_tokens: int, origin: str,
                          move: bool, run_id: str | None = None) -> Path:
        """Place `sources` in the partition folder (renamed when `move`, else linked), switch the catalog
        row and the `activations` view to them in one transaction, then remove the old files. A crash at
        any point leaves the old partition or the new one in the catalog, never a half-written file.

        On a lake no lock keeps a second writer of the pair away: when another writer's commit overlaps
        this one, DuckLake fails one of them. The loser retries when the other commit was of other rows;
        when it replaced this very pair, the loser removes its files and says so (its rows never showed).
        The replaced files stay until `featstore maintain`, as a lake keeps old snapshots readable."""
        folder = self.partition_dir(sae, corpus)
        before = self._partition_row(sae, corpus) if self.lake is not None else None
        stem, count = f"part-{uuid.uuid4().hex[:12]}", len(sources)
        if count == 1:
            finals, stored = [folder / f"{stem}.parquet"], folder / f"{stem}.parquet"
        else:
            finals = [folder / f"{stem}-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
            stored = folder / f"{stem}-*-of-{count:05d}.parquet"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for source, final in zip(sources, finals):
                if move:
                    os.replace(source, final)
                else:
                    link_or_copy(source, final)
            size = sum(f.stat().st_size for f in finals)
            for attempt in range(COMMIT_ATTEMPTS):
                try:
                    with self.transaction(tables=("activation_partitions", "ingest_parts")) as con:
                        current = run(con, "partitions/run_of", sae=sae, corpus=corpus).fetchone()
                        if run_id is not None and current is not None and current[0] == run_id:
                            raise _Published(self.root / current[1])  # by another shard of this run
                        old = self.committed_files(con, "sae = ? AND corpus = ?", [sae, corpus])
                        run(con, "partitions/drop_row", sae=sae, corpus=corpus)
                        run(con, "partitions/insert", sae=sae, corpus=corpus, path=self.relative(stored), n_rows=n_rows,
                            n_tokens=n_tokens, bytes=size, origin=origin, run=run_id)
                        if run_id is not None:
                            run(con, "parts/forget_run", run=run_id)
                        self._refresh_activations_view(con)
                    break
                except lake.CommitConflict:
                    if self._partition_row(sae, corpus) != before and run_id is None:
                        raise FeatstoreError(
                            f"another writer replaced the activations of SAE {sae!r} on corpus {corpus!r} while this one "
                            "committed; its partition stands and nothing of this one is visible: rerun to replace it"
                        ) from None
                    if attempt == COMMIT_ATTEMPTS - 1:
                        raise
                    _back_off(attempt)
        except _Published as published:
            for final in finals:
                final.unlink(missing_ok=True)
            return published.path
        except BaseException:
            for final in finals:
                final.unlink(missing_ok=True)
            raise
        if self.lake is not None:
            return stored  # readers of older snapshots may still read the old files: `featstore maintain` removes them
        for path in set(old) - set(finals):
            path.unlink(missing_ok=True)
        self._sweep_orphans(folder, keep=set(finals))
        return stored

    def retrying(self, write: Callable[[duckdb.DuckDBPyConnection], T], tables: tuple[str, ...] | None = None) -> T:
        """`write(con)` in a transaction (see `transaction` for `tables`), run again (after a short random
        pause) while it loses commit conflicts to other writers of a lake; for writes that may start afresh."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                with self.transaction(tables) as con:
                    return write(con)
            except lake.CommitConflict:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                _back_off(attempt)
        raise AssertionError("unreachable")

    def _partition_row(self, sae: str, corpus: str) -> tuple | None:
        """The committed catalog row of (sae, corpus) as a reader sees it now, or None."""
        with self.connect(read_only=True) as con:
            return run(con, "partitions/run_of", sae=sae, corpus=corpus).fetchone()

    def _pair_lock(self, sae: str, corpus: str):
        """Exclusive right to write (sae, corpus) on the file catalog (see `_file_pair_lock`); on a lake,
        none: the catalog's conflict rules decide between two writers of the pair."""
        return nullcontext() if self.lake is not None else self._file_pair_lock(sae, corpus)

    @contextmanager
    def _file_pair_lock(self, sae: str, corpus: str) -> Iterator[None]:
        """Exclusive right to write (sae, corpus); a second writer is refused, not queued behind a long ingest."""
        locks = self.root / LOCKS_DIR
        locks.mkdir(parents=True, exist_ok=True)
        path = locks / f"{check_name('SAE', sae)}@{check_name('corpus', corpus)}.lock"
        while True:
            fh = open(path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise FeatstoreError(
                    f"another featstore process is writing the activations of SAE {sae!r} on corpus {corpus!r}; "
                    "nothing was written: wait for it to finish (its partition then stands), or rerun after it"
                ) from None
            if path.exists() and os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                break
            fh.close()  # the holder before us removed the file as we opened it: lock the new one
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # removed while locked, so the folder keeps no trace of writers
            fh.close()

    @contextmanager
    def _staged_file(self) -> Iterator[Path]:
        """A fresh file name in .staging/, locked while this writer lives; dead writers' files are swept."""
        staging = self.root / STAGING_DIR
        staging.mkdir(parents=True, exist_ok=True)
        self._sweep_staging(staging)
        path = staging / f"part-{uuid.uuid4().hex}.parquet.tmp"
        with open(path, "wb") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                yield path
            finally:
                path.unlink(missing_ok=True)

    @staticmethod
    def _sweep_staging(staging: Path) -> None:
        """Remove staged files whose writer is gone (lock free, and not just created): a killed ingest's leftovers.

        A staged file's twins (`part-X.parquet.tmp.sorted`, storage.sort_partition's output) go with it:
        the writer's lock is on the staged file, so a twin whose staged file is free or gone is dead."""
        for path in staging.glob("part-*.tmp*"):
            owner = path.with_name(path.name.split(".tmp", 1)[0] + ".tmp")
            try:
                if time.time() - path.stat().st_mtime < STAGING_GRACE_SECONDS:
                    continue
                if not owner.exists():
                    path.unlink(missing_ok=True)
                    continue
                with open(owner, "rb") as fh:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink(missing_ok=True)
            except (BlockingIOError, FileNotFoundError):
                continue

    def drop_partition(self, con: duckdb.DuckDBPyConnection, sae: str, corpus: str | None = None) -> list[Path]:
        """Remove catalog rows (inside the caller's transaction); returns files to delete after commit."""
        where, params = ("sae = ?", [sae]) if corpus is None else ("sae = ? AND corpus = ?", [sae, corpus])
        paths = self.committed_files(con, where, params)
        con.execute(f"DELETE FROM activation_partitions WHERE {where}", params)
        self._refresh_activations_view(con)
        return [] if self.lake is not None else paths  # a lake's old snapshots still name them: `featstore maintain`

    @staticmethod
    def _sweep_orphans(folder: Path, keep: set[Path]) -> None:
        """Delete files of the pair's folder left by runs killed between rename and commit (pair lock held)."""
        for path in folder.iterdir():
            if path not in keep and (path.name.startswith(".part-") or path.name.startswith("part-")):
                path.unlink(missing_ok=True)

    # -- maintenance -----------------------------------------------------------------------------

    def maintain(self, older_than_s: float = 3600.0) -> dict:
        """Reclaim space: partition files no committed partition names any more (replaced or dropped, or
        left by a killed writer) and older than `older_than_s` go; on a lake, also snapshots older than
        that are expired, small catalog data files merged and the files only old snapshots used deleted.
        Readers of a snapshot younger than `older_than_s` are never affected."""
        self.create()
        cutoff = time.time() - older_than_s
        done = {"backend": "ducklake" if self.lake else "duckdb-file", "older_than_s": older_than_s}
        with self.connect() as con:
            if self.lake is not None:
                interval = f"now() - to_seconds({float(older_than_s)})"
                done["snapshots_before"] = con.execute(f"SELECT count(*) FROM ducklake_snapshots('{lake.ALIAS}')").fetchone()[0]
                con.execute(f"CALL ducklake_flush_inlined_data('{lake.ALIAS}')")
                con.execute(f"CALL ducklake_merge_adjacent_files('{lake.ALIAS}')")
                con.execute(f"CALL ducklake_expire_snapshots('{lake.ALIAS}', older_than => {interval})")
                con.execute(f"CALL ducklake_cleanup_old_files('{lake.ALIAS}', older_than => {interval})")
                con.execute(f"CALL ducklake_delete_orphaned_files('{lake.ALIAS}', older_than => {interval})")
                done["snapshots_after"] = con.execute(f"SELECT count(*) FROM ducklake_snapshots('{lake.ALIAS}')").fetchone()[0]
                _LAKE_MAINTAINED[0] += 1
            else:
                con.execute("CHECKPOINT")
            kept = set(self.committed_files(con))
        removed = [f for f in self.activations_dir.glob("sae=*/corpus=*/*part-*")
                   if f not in kept and f.stat().st_mtime < cutoff]
        done["partition_files_removed"], done["bytes_freed"] = len(removed), sum(f.stat().st_size for f in removed)
        for f in removed:
            f.unlink(missing_ok=True)
        return done

    # -- the activations view ------------------------------------------------------------------

    def _refresh_activations_view(self, con: duckdb.DuckDBPyConnection) -> None:
        paths = [r[0] for r in run(con, "partitions/paths").fetchall()]
        files = {path: [f for f in partition_files(self.root, path) if f.is_file()] for path in paths}
        missing = [str(self.root / path) for path in paths if len(files[path]) != expected_files(path)]
        if missing:
            raise FeatstoreError(
                f"the catalog lists {len(missing)} partition(s) with missing files, e.g. {missing[0]}; "
                "restore them from a backup, or re-ingest those (SAE, corpus) pairs"
            )
        self._create_activations_view(con, [str(f) for path in paths for f in files[path]])
        con.execute(f"COMMENT ON VIEW {'warehouse.main.' if self.lake else ''}activations IS {_literal(str(self.root))}")
        run(con, "warehouse/drop_shadow_view")  # a moved lake's shadow: the stored view is this folder's now

    @staticmethod
    def _view_root(con: duckdb.DuckDBPyConnection) -> str | None:
        rows = run(con, "warehouse/activations_view_root").fetchall()
        return rows[0][0] if rows else None

    def _shadow_moved_view(self, con: duckdb.DuckDBPyConnection, files: list[str] | None = None) -> None:
        """On a moved or copied warehouse opened read-only, a temporary `activations` view over this
        folder's files hides the stored one (which names the old folder); every view built on it follows."""
        if self._view_root(con) in (str(self.root), None):
            return
        if files is None:
            files = [str(f) for f in self.committed_files(con)]
        self._create_activations_view(con, files, temporary=True)

    def _create_activations_view(self, con: duckdb.DuckDBPyConnection, paths: list[str], temporary: bool = False) -> None:
        con.execute(self._activations_view_sql(paths, temporary))

    def _activations_view_sql(self, paths: list[str], temporary: bool = False) -> str:
        """`activations(sae, corpus, tok, feature, act)` over the committed files, by absolute path.

        Absolute paths make the view work from any directory in the DuckDB shell; hive partitioning
        turns the folder names into the sae and corpus columns and prunes files on filters. Opened
        from another folder (the warehouse was moved or copied), the stored view refuses to read
        the old folder's files until any featstore command (e.g. `featstore relocate`) rebuilds it.
        """
        if paths:
            files = "[" + ", ".join(_literal(p) for p in paths) + "]"
            here = ", ".join(_literal(str(p / DB_FILE)) for p in {self.root, self.given_root})
            moved = _literal(f"this warehouse was moved or copied from {self.root}; run `featstore relocate` in its new place")
            scan = f"SELECT sae, corpus, tok, feature, act FROM read_parquet({files}, hive_partitioning = true, hive_types_autocast = false)"
            guard = f" WHERE (SELECT CASE WHEN count(*) FILTER (WHERE path IN ({here})) = 0 THEN error({moved}) ELSE true END FROM duckdb_databases())"
            body = scan + ("" if temporary or self.lake is not None else guard)  # a lake's machines differ in mounts
        else:
            body = statements("warehouse/no_activations")[0]
        return f"CREATE OR REPLACE {'TEMP ' if temporary else ''}VIEW activations AS {body}"

    def shell_init(self) -> str:
        """The SQL that opens this warehouse in a DuckDB shell (`duckdb -init FILE`, or pasted): the catalog
        attached as `warehouse` and in use, over this folder's files; on a lake, also the extensions and
        the session macros (featstore.warehouse.lake), for a shell of the lake's duckdb version."""
        with self.connect(read_only=True) as con:
            moved = self._view_root(con) not in (str(self.root), None)
            files = [str(f) for f in self.committed_files(con)] if moved else []
        if self.lake is None:
            lines = [f"ATTACH {_literal(str(self.db_path))} AS warehouse", "USE warehouse"]
        else:
            lines = [f"LOAD {_literal(lake.extension_path(name))}" for name in lake.EXTENSIONS]
            lines += [self.lake.attach_statement(), f"USE {lake.ALIAS}", lake.SEARCH_PATH]
        if moved:
            lines.append(self._activations_view_sql(files, temporary=True))
        if self.lake is not None:
            lines += lake.session_macros(sql_files())
        return ";\n".join(lines) + ";\n"
