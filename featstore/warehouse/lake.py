"""A warehouse whose catalog is a DuckLake on PostgreSQL, for many writers on many machines.

The single-file DuckDB catalog (`featstore.duckdb`) is written by one process at a time and its
locks do not hold on network file systems. A lake keeps the same tables, views and macros in a
DuckLake whose metadata lives in PostgreSQL: every DuckDB client, on any machine, reads snapshots
and commits transactions there, and PostgreSQL decides which of two conflicting commits wins.

A warehouse folder is a lake when it holds `catalog.toml` (written by `featstore init --catalog
postgres://…`). The activation partitions stay featstore's own sorted Parquet files under the
folder, exactly as in the file backend (the correlation engines stream them in (feature, tok)
order); a partition is committed by its catalog row, so the catalog alone says what is visible.
DuckLake stores the catalog tables' rows under the data path (`lake/` by default).

DuckLake accepts no PRIMARY KEY, UNIQUE, REFERENCES or CHECK, so the table files are applied in a
"lake form" without them (`lake_form`), and what they declared is checked in code before every
featstore commit (`check_constraints`). Every featstore commit also bumps one guard row, so two
commits that overlap in time always conflict and one of them is rolled back: commits are
serialisable, which is what makes checking keys inside a transaction exact. Views live in the lake;
macros are made in each session from the same files (`session_macros` says why).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import tomllib

from featstore.errors import FeatstoreError
from featstore.warehouse.queries import run

CONFIG_FILE = "catalog.toml"
KIND = "ducklake-postgres"
ALIAS = "warehouse"
MACRO_SCHEMA = "memory.main"  # the session's own in-memory database: its macros are seen by every cursor
SEARCH_PATH = f"SET search_path = '{ALIAS}.main,{MACRO_SCHEMA}'"  # per connection and cursor (featstore.warehouse.core)
DEFAULT_DATA_PATH = "lake"
GUARD_TABLE = "featstore_commits"
EXTENSIONS = {"ducklake": "duckdb_extension_ducklake", "postgres_scanner": "duckdb_extension_postgres_scanner"}
URL = re.compile(r"^postgres(?:ql)?://[^\s]+$")
INSTALL_HINT = "install the lake backend in its own environment: pip install 'featstore[ducklake]'"


class CommitConflict(FeatstoreError):
    """Another writer committed to the lake while this transaction ran; nothing of it was written."""


def redact(text: str) -> str:
    """`text` with any PostgreSQL password in it replaced by ***."""
    text = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", text)
    return re.sub(r"(?i)(password=)\S+", r"\1***", text)


def sql_literal(value: str) -> str:
    """`value` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def extension_path(name: str) -> str:
    """The DuckLake or PostgreSQL extension file that matches the running duckdb, from its wheel."""
    package = EXTENSIONS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FeatstoreError(f"the DuckDB extension package {package} is not installed; {INSTALL_HINT}")
    folder = Path(spec.origin).parent / "extensions" / f"v{duckdb.__version__}"
    found = glob.glob(str(folder / f"{name}.duckdb_extension"))
    if not found:
        built = sorted(p.name for p in (Path(spec.origin).parent / "extensions").glob("v*"))
        raise FeatstoreError(
            f"{package} is built for duckdb {', '.join(b[1:] for b in built) or '?'}, this is duckdb "
            f"{duckdb.__version__}; {INSTALL_HINT}"
        )
    return found[0]


@dataclass(frozen=True)
class Lake:
    """Where a lake warehouse's catalog and data are: `postgres` (a postgresql:// URL) and `data_path`
    (relative to the warehouse folder unless absolute)."""

    root: Path
    postgres: str
    data_path: str = DEFAULT_DATA_PATH

    @classmethod
    def load(cls, root: Path) -> Lake | None:
        """The lake a warehouse folder names in catalog.toml, or None for a file warehouse."""
        path = root / CONFIG_FILE
        if not path.is_file():
            return None
        try:
            section = tomllib.loads(path.read_text(encoding="utf-8"))["catalog"]
            if section.get("kind") != KIND or not URL.match(section.get("postgres", "")):
                raise ValueError("catalog.kind must be 'ducklake-postgres' with a postgres URL")
            return cls(root, section["postgres"], str(section.get("data_path", DEFAULT_DATA_PATH)))
        except (tomllib.TOMLDecodeError, KeyError, ValueError) as exc:
            raise FeatstoreError(f"{path} is not a featstore catalog file ({exc}); fix it or run `featstore init --catalog` again") from exc

    def save(self) -> None:
        """Write catalog.toml (atomically: a reader sees the old file or the new one)."""
        text = (
            "# This warehouse's catalog is a DuckLake on PostgreSQL (featstore init --catalog).\n"
            "[catalog]\n"
            f"kind = {json.dumps(KIND)}\n"
            f"postgres = {json.dumps(self.postgres)}\n"
            f"data_path = {json.dumps(self.data_path)}\n"
        )
        tmp = self.root / f".{CONFIG_FILE}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.root / CONFIG_FILE)

    @property
    def data_dir(self) -> Path:
        return self.root / self.data_path

    @property
    def where(self) -> str:
        """The catalog as error messages name it (no password)."""
        return redact(self.postgres)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB with the lake attached as `warehouse` and in use."""
        con = duckdb.connect(":memory:")
        try:
            for name in EXTENSIONS:
                con.execute(f"LOAD {sql_literal(extension_path(name))}")
            con.execute(self.attach_statement(read_only))
            con.execute(f"USE {ALIAS}")
            con.execute(SEARCH_PATH)
        except duckdb.Error as exc:
            con.close()
            raise FeatstoreError(
                f"cannot open the DuckLake catalog at {self.where}: {redact(first_line(exc))}; check the URL in "
                f"{self.root / CONFIG_FILE} and that PostgreSQL is up"
            ) from exc
        except BaseException:
            con.close()
            raise
        return con

    def attach_statement(self, read_only: bool = False) -> str:
        """The ATTACH that opens this lake (also what the DuckDB shell recipe runs)."""
        options = [f"DATA_PATH {sql_literal(str(self.data_dir) + '/')}", "OVERRIDE_DATA_PATH true"]
        if read_only:
            options.append("READ_ONLY")
        return f"ATTACH {sql_literal('ducklake:postgres:' + self.postgres)} AS {ALIAS} ({', '.join(options)})"

    def create_guard(self, con: duckdb.DuckDBPyConnection) -> None:
        """The one-row table every featstore commit updates (see the module docstring)."""
        found = run(con, "lake/table_exists", database=ALIAS, table=GUARD_TABLE).fetchone()[0]
        if found:  # the usual case: no statement that another writer's commit could conflict with
            return
        con.execute(f"CREATE TABLE IF NOT EXISTS {GUARD_TABLE} (commits BIGINT NOT NULL)")
        if con.execute(f"SELECT count(*) FROM {GUARD_TABLE}").fetchone()[0] == 0:
            con.execute(f"INSERT INTO {GUARD_TABLE} VALUES (0)")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def is_conflict(exc: BaseException) -> bool:
    """True when DuckLake refused a commit because another transaction changed the same things."""
    return isinstance(exc, duckdb.Error) and "Transaction conflict" in str(exc)


# -- the lake form of the table files and the constraints it leaves out --------------------------------


@dataclass(frozen=True)
class Constraint:
    """A key, reference or check of a table file, enforced in code on a lake."""

    table: str
    kind: str  # 'unique', 'references' or 'check'
    columns: tuple[str, ...] = ()
    target: tuple[str, tuple[str, ...]] | None = None  # references: (table, columns)
    expression: str = ""  # check

    def violations(self) -> str:
        """SQL returning one text row per offending key (empty when the constraint holds)."""
        cols, key = ", ".join(self.columns), ", ".join(f"s.{c}" for c in self.columns)
        present = " AND ".join(f"s.{c} IS NOT NULL" for c in self.columns)
        if self.kind == "unique":
            label = sql_literal(f"duplicate ({cols}) = ")
            return f"SELECT {label} || CAST(row({key}) AS VARCHAR) FROM {self.table} s WHERE {present} GROUP BY ALL HAVING count(*) > 1"
        if self.kind == "references":
            table, targets = self.target
            on = " AND ".join(f"r.{t} = s.{c}" for c, t in zip(self.columns, targets))
            label, missing = sql_literal(f"({cols}) = "), f"NOT EXISTS (SELECT 1 FROM {table} r WHERE {on})"
            return f"SELECT DISTINCT {label} || CAST(row({key}) AS VARCHAR) || {sql_literal(f' not in {table}')} FROM {self.table} s WHERE {present} AND {missing}"
        return f"SELECT {sql_literal(f'CHECK ({self.expression}) fails')} FROM {self.table} WHERE NOT ({self.expression})"


CREATE_TABLE = re.compile(r"(?is)^\s*create\s+(?:or\s+replace\s+)?table\s+(?:if\s+not\s+exists\s+)?([a-z_]\w*)\s*\(")
TEMP_TABLE = re.compile(r"(?is)^\s*create\s+(?:or\s+replace\s+)?temp(?:orary)?\s+table")
INSERT_OR = re.compile(r"(?is)^(\s*)insert\s+or\s+ignore\s+into\b")
DROP_TABLE = re.compile(r"(?is)^\s*drop\s+table\s+(?:if\s+exists\s+)?([a-z_]\w*)")
COLUMN_KEY = re.compile(r"(?is)\s+(primary\s+key|unique)\b")
REFERENCE = re.compile(r"(?is)\s+references\s+([a-z_]\w*)\s*\(([^)]*)\)")
TABLE_KEY = re.compile(r"(?is)^\s*(primary\s+key|unique)\s*\(([^)]*)\)\s*$")
TABLE_REFERENCE = re.compile(r"(?is)^\s*foreign\s+key\s*\(([^)]*)\)\s*references\s+([a-z_]\w*)\s*\(([^)]*)\)\s*$")


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _unquoted(text: str, start: int = 0):
    """(index, character, depth) of the characters of `text` from `start` outside string literals; depth
    counts the parentheses open around the character (an opening one counts from the next character)."""
    depth, quoted = 0, False
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted:
            depth -= ch == ")"
            yield i, ch, depth
            depth += ch == "("


def _split_top(body: str) -> list[str]:
    """`body` split at the commas outside parentheses and string literals."""
    cuts = [i for i, ch, depth in _unquoted(body) if ch == "," and depth == 0]
    return [body[a + 1:b] for a, b in zip([-1, *cuts], [*cuts, len(body)])]


def _closing(text: str, open_at: int) -> int:
    """The index of the parenthesis that closes the one at `open_at`."""
    for i, ch, depth in _unquoted(text, open_at):
        if ch == ")" and depth == 0:
            return i
    raise FeatstoreError(f"unbalanced parentheses in {text[:60]!r}")


def _take_checks(item: str) -> tuple[str, list[str]]:
    """A column or table item without its CHECK (...) clauses, and those clauses' expressions."""
    checks = []
    while (found := re.search(r"(?i)\bcheck\s*\(", item)):
        open_at = found.end() - 1
        close = _closing(item, open_at)
        checks.append(item[open_at + 1:close].strip())
        item = item[:found.start()] + item[close + 1:]
    return item, checks


def _create_table(statement: str, table: str) -> tuple[str, list[Constraint]]:
    """One CREATE TABLE without its constraints, and the constraints."""
    open_at = CREATE_TABLE.match(statement).end() - 1
    close = _closing(statement, open_at)
    kept, constraints = [], []
    for raw in _split_top(statement[open_at + 1:close]):
        item, checks = _take_checks(raw)
        constraints += [Constraint(table, "check", expression=e) for e in checks]
        if (key := TABLE_KEY.match(item)):
            constraints.append(Constraint(table, "unique", _names(key.group(2))))
            continue
        if (ref := TABLE_REFERENCE.match(item)):
            constraints.append(Constraint(table, "references", _names(ref.group(1)), (ref.group(2), _names(ref.group(3)))))
            continue
        if not item.strip():
            continue
        column = item.split()[0]
        if (ref := REFERENCE.search(item)):
            constraints.append(Constraint(table, "references", (column,), (ref.group(1), _names(ref.group(2)))))
            item = item[:ref.start()] + item[ref.end():]
        if COLUMN_KEY.search(item):
            constraints.append(Constraint(table, "unique", (column,)))
            item = COLUMN_KEY.sub("", item)
        kept.append(item)
    return statement[:open_at + 1] + ",".join(kept) + statement[close:], constraints


def lake_form(text: str) -> tuple[str, dict[str, list[Constraint]]]:
    """A table file as DuckLake accepts it, and per table it (re)creates the constraints it declared.

    Keys, references and checks are cut out; `INSERT OR IGNORE` becomes `INSERT` (a fresh lake applies
    every file in order, and a duplicate it would have ignored fails the key check instead of passing
    silently); temporary tables keep everything (they live in DuckDB, not in the lake).
    """
    text = re.sub(r"--[^\n]*", "", text)
    statements, constraints = [], {}
    for statement in (s.query.strip().rstrip(";") for s in duckdb.extract_statements(text)):
        if (created := CREATE_TABLE.match(statement)) and not TEMP_TABLE.match(statement):
            table = created.group(1).lower()
            statement, constraints[table] = _create_table(statement, table)
        elif (dropped := DROP_TABLE.match(statement)):
            constraints[dropped.group(1).lower()] = []
        statements.append(INSERT_OR.sub(r"\1INSERT INTO", statement))
    return ";\n".join(statements) + ";", constraints


MACRO = re.compile(r"(?is)^\s*create\s+or\s+replace\s+macro\s+")


def session_macros(files: list[tuple[str, str]]) -> list[str]:
    """Every macro of the view and macro files, as macros of the session's in-memory database.

    The DuckLake of duckdb 1.5 stores a macro's parameter defaults wrongly (a list default such as
    `[0.8]` leaves a catalog that no client can attach again; NULL comes back as the text 'NULL'), so on a
    lake the macros live in each featstore session instead, made from the same files; views stay in
    the lake; `featstore shell-init` prints the statements for a DuckDB shell."""
    return [s for path, text in files if not path.startswith("tables/") for s in _session_form(text) if SESSION_MACRO.match(s)]


SESSION_MACRO = re.compile(rf"(?is)^\s*create\s+or\s+replace\s+macro\s+{re.escape(MACRO_SCHEMA)}\.")


def _session_form(text: str) -> list[str]:
    """A view/macro file's statements, its macros made in the session's database."""
    body = re.sub(r"--[^\n]*", "", text)
    return [MACRO.sub(f"CREATE OR REPLACE MACRO {MACRO_SCHEMA}.", s.query.strip().rstrip(";"))
            for s in duckdb.extract_statements(body)]


def create_macros(con: duckdb.DuckDBPyConnection, macros: list[str]) -> None:
    """Create the session macros in order, up to the first whose tables this lake does not have yet (a
    new lake, or one a newer featstore has still to migrate: the migration creates the rest)."""
    for statement in macros:
        try:
            con.execute(statement)
        except duckdb.CatalogException:
            return


def object_form(path: str, text: str) -> tuple[str, str]:
    """A schema file as a lake applies it, as (statements before the file's transaction, in it): a table
    file's lake form; a view file's macros as session macros (`session_macros`; a transaction writes
    one database), then its views as they are."""
    if path.startswith("tables/"):
        return "", lake_form(text)[0]
    statements = _session_form(text)
    macros = [s for s in statements if SESSION_MACRO.match(s)]
    views = [s for s in statements if not SESSION_MACRO.match(s)]
    return ";\n".join(macros), ";\n".join(views)


def table_constraints(texts: list[str]) -> list[Constraint]:
    """The constraints in force after applying `texts` (table files in order) to a new warehouse."""
    found: dict[str, list[Constraint]] = {}
    for text in texts:
        found.update(lake_form(text)[1])
    return [c for cs in found.values() for c in cs]


def check_constraints(con: duckdb.DuckDBPyConnection, constraints: list[Constraint]) -> None:
    """Refuse (FeatstoreError) when the transaction open on `con` breaks a declared constraint."""
    if not constraints:
        return
    union = " UNION ALL ".join(f"SELECT * FROM ({c.violations()} LIMIT 1) AS v{i}" for i, c in enumerate(constraints))
    rows = con.execute(f"SELECT * FROM ({union}) LIMIT 1").fetchall()
    if rows:
        raise FeatstoreError(f"refused: the change would break a declared constraint ({rows[0][0]}); nothing was written")


def commit(con: duckdb.DuckDBPyConnection, constraints: list[Constraint]) -> None:
    """Check the constraints, bump the guard row and COMMIT; a conflict with another writer's commit is a
    CommitConflict, and either way a failed transaction is rolled back."""
    try:
        check_constraints(con, constraints)
        con.execute(f"UPDATE {GUARD_TABLE} SET commits = commits + 1")
        con.execute("COMMIT")
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # a failed COMMIT has already ended the transaction
        if is_conflict(exc):
            raise CommitConflict(
                "another writer committed to the warehouse catalog at the same time; nothing of this change was "
                "written: run it again"
            ) from exc
        raise
