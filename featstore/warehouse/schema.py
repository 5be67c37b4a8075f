"""The sql/ folder as a schema: numbered table migrations, then views and macros in dependency order.

`sql/tables/NNN_<table>.sql` are applied once each, in number order, and never edited (a changed one
is refused). Every other `sql/<area>/<object>.sql` creates, with CREATE OR REPLACE, the view or
macro it is named after (a table macro may come with the view of the same name at its defaults).
Their order is worked out from the object names each file mentions, the way dbt orders models by
`ref()`, so numbers never decide it; a changed file is re-applied with everything built on it.
`sql/queries/` holds named statements that the data layer runs by name: never applied here.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import duckdb

from featstore.errors import FeatstoreError
from featstore.warehouse.queries import run, statements

TABLES = "tables"
NOT_APPLIED = frozenset({"queries"})
# Created by featstore.warehouse.core over the committed Parquet partitions, before any sql/ file.
EXTERNAL = frozenset({"activations"})
TABLE_FILE = re.compile(r"^(\d{3})_([a-z][a-z0-9_]*)\.sql$")
OBJECT_FILE = re.compile(r"^([a-z][a-z0-9_]*)\.sql$")
CREATES = re.compile(r"(?is)^create\s+or\s+replace\s+(view|macro)\s+([a-z_][a-z0-9_]*)\b")
# Round-1 warehouses recorded bare file names; these two were named after their contents' old names.
ROUND1_TABLES = {"010_correlations.sql": "correlation_runs", "011_correlation_pairs.sql": "correlations"}


@dataclass(frozen=True)
class SqlFile:
    """One schema file: `path` is relative to sql/ (e.g. 'tables/006_models.sql')."""

    path: str
    text: str

    @property
    def is_table(self) -> bool:
        return self.path.startswith(f"{TABLES}/")

    @property
    def object(self) -> str:
        """The table it creates or changes, or the view/macro it creates."""
        stem = self.path.rsplit("/", 1)[-1]
        return TABLE_FILE.match(stem).group(2) if self.is_table else stem[: -len(".sql")]

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @cached_property
    def code(self) -> str:
        """The text without comments and string literals: what reference parsing looks at."""
        return re.sub(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'", " ", self.text, flags=re.S)


def discover(folder) -> list[SqlFile]:
    """Every table, view and macro file under `folder` (a Path or importlib Traversable), checked."""
    stray = sorted(e.name for e in folder.iterdir() if e.name.endswith(".sql"))
    if stray:
        raise FeatstoreError(f"sql/{stray[0]}: move it to sql/tables/NNN_<table>.sql or sql/<area>/<object>.sql")
    found = []
    for area in sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: d.name):
        if area.name in NOT_APPLIED or area.name.startswith((".", "_")):
            continue
        pattern = TABLE_FILE if area.name == TABLES else OBJECT_FILE
        for entry in sorted(area.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            if not pattern.match(entry.name):
                shape = "NNN_<table>.sql" if area.name == TABLES else "<object>.sql (lower case)"
                raise FeatstoreError(f"sql/{area.name}/{entry.name}: name it {shape}")
            found.append(SqlFile(f"{area.name}/{entry.name}", entry.read_text(encoding="utf-8")))
    _check(found)
    return found


def _check(files: Sequence[SqlFile]) -> None:
    """One object per name; every file creates what it is named after."""
    numbers: dict[str, str] = {}
    owners: dict[str, str] = {}
    for f in files:
        if f.is_table:
            number = f.path.split("/")[1][:3]
            if number in numbers:
                raise FeatstoreError(f"sql/{f.path} and sql/{numbers[number]} share the number {number}; renumber the new one")
            numbers[number] = f.path
            if not re.search(rf"(?i)\btable\s+(if\s+not\s+exists\s+)?{f.object}\b", f.code):
                raise FeatstoreError(f"sql/{f.path} does not create or alter table {f.object}; name the file after its table")
            continue
        if f.object in owners:
            raise FeatstoreError(f"sql/{f.path} and sql/{owners[f.object]} both create {f.object}; keep one")
        owners[f.object] = f.path
        statements = [s.strip() for s in f.code.split(";") if s.strip()]
        created = [CREATES.match(s) for s in statements]
        if not statements or not all(created) or {m.group(2) for m in created} != {f.object}:
            raise FeatstoreError(
                f"sql/{f.path} must only CREATE OR REPLACE the view or macro {f.object}; tables go in sql/tables/"
            )


def references(f: SqlFile, names: Iterable[str]) -> set[str]:
    """Known object names `f` mentions (not after a '.', not its own CTEs), excluding itself."""
    ctes = set(re.findall(r"(?i)(?:\bwith\s+(?:recursive\s+)?|,\s*)([a-z_]\w*)\s+as\s*(?:not\s+)?(?:materialized\s*)?\(", f.code))
    words = set(re.findall(r'(?<![\w."])"?([A-Za-z_]\w*)', f.code))
    return (set(names) & {w.lower() for w in words}) - ctes - {f.object}


def ordered(files: Sequence[SqlFile]) -> list[SqlFile]:
    """Tables in number order, then views and macros each after the objects it references."""
    tables = sorted((f for f in files if f.is_table), key=lambda f: f.path)
    views = {f.object: f for f in files if not f.is_table}
    needs = {name: references(f, views) for name, f in views.items()}
    done: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + (name,)
            raise FeatstoreError(f"sql/ views and macros reference each other in a cycle: {' -> '.join(cycle)}")
        state[name] = "visiting"
        for dep in sorted(needs[name]):
            visit(dep, path + (name,))
        state[name] = "done"
        done.append(name)

    for name in sorted(views, key=lambda n: views[n].path):
        visit(name, ())
    return tables + [views[name] for name in done]


def sql_files(folder) -> list[tuple[str, str]]:
    """(path under sql/, text) of every schema file, in the order they are applied."""
    return [(f.path, f.text) for f in ordered(discover(folder))]


def _files(pairs: Iterable[tuple[str, str]]) -> list[SqlFile]:
    return [SqlFile(path, text) for path, text in pairs]


def sources(patterns: Iterable[str], pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(object, text) of the objects matching `patterns` (names or globs) and all they reference.

    Keyed by object name, so moving or renumbering a file never changes a pipeline step's hash. A
    table's text is all its migration files in order.
    """
    files = _files(pairs)
    by_object: dict[str, list[SqlFile]] = {}
    for f in ordered(files):
        by_object.setdefault(f.object, []).append(f)
    todo = []
    for pattern in patterns:
        matched = [name for name in by_object if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise FeatstoreError(f"no sql/ file creates an object named {pattern!r}")
        todo += matched
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [ref for f in by_object[name] for ref in references(f, by_object)]
    return [(name, "".join(f.text for f in by_object[name])) for name in sorted(seen)]


# -- applying -----------------------------------------------------------------------------------------


def _commit(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("COMMIT")


def _as_written(f: SqlFile) -> tuple[str, str]:
    return "", f.text


def migrate(con: duckdb.DuckDBPyConnection, pairs: Iterable[tuple[str, str]], form: Callable[[SqlFile], tuple[str, str]] = _as_written,
            commit: Callable[[duckdb.DuckDBPyConnection], None] = _commit) -> list[str]:
    """Apply new table files, then every changed view/macro and all built on it; returns the paths applied.

    A table migration re-applies every view and macro too: DuckDB views keep the column types they
    were bound with. An edited table file is refused before anything is written; nothing is written
    when nothing changed. `form` turns a file into what the catalog accepts (a DuckLake's form,
    featstore.warehouse.lake): statements run before its transaction (a lake's session macros) and in it;
    `commit` ends each file's transaction; the record keeps the file's hash.
    """

    files = ordered(_files(pairs))
    for statement in statements("warehouse/schema_migrations"):
        con.execute(form(SqlFile("tables/000_schema_migrations.sql", statement))[1])
    recorded = dict(run(con, "warehouse/applied").fetchall())
    renames = _round1_renames(recorded, files)
    applied = {renames.get(p, p): digest for p, digest in recorded.items() if renames.get(p, p)}
    tables = [f for f in files if f.is_table]
    edited = [f.path for f in tables if applied.get(f.path, f.digest) != f.digest]
    if edited:
        raise FeatstoreError(
            f"sql/{edited[0]} changed after this warehouse applied it; put table changes in a new numbered sql/tables/ file"
        )
    if renames:
        _rename_records(con, renames)
    done = [_apply(con, f, form, commit) for f in tables if f.path not in applied]
    views = [f for f in files if not f.is_table]
    stale = {f.object for f in views if done or applied.get(f.path) != f.digest}
    for f in views:  # in dependency order, so one pass reaches everything built on a stale object
        if f.object in stale or references(f, stale):
            stale.add(f.object)
            done.append(_apply(con, f, form, commit))
    _forget_removed(con, files, applied)
    return done


def _apply(con: duckdb.DuckDBPyConnection, f: SqlFile, form: Callable[[SqlFile], tuple[str, str]],
           commit: Callable[[duckdb.DuckDBPyConnection], None]) -> str:
    before, text = form(f)
    if before:
        con.execute(before)
    con.execute("BEGIN TRANSACTION")
    try:
        if text:  # empty: a lake's file of macros only
            con.execute(text)
        run(con, "warehouse/record_applied", file=f.path, sha256=f.digest)
    except Exception as exc:
        con.execute("ROLLBACK")
        raise FeatstoreError(f"sql/{f.path} failed to apply: {str(exc).splitlines()[0]}") from exc
    commit(con)
    return f.path


def _round1_renames(recorded: dict[str, str], files: Sequence[SqlFile]) -> dict[str, str | None]:
    """Round-1 records ('006_models.sql') -> the table file now holding that text, or None for a view.

    A renamed record keeps its sha256, so an edited table file is still refused; view records go,
    and their views are re-applied under their new paths.
    """
    first_file: dict[str, str] = {}
    for f in files:
        if f.is_table:
            first_file.setdefault(f.object, f.path)
    renames: dict[str, str | None] = {}
    for name in (p for p in recorded if "/" not in p):
        match = TABLE_FILE.match(name)
        renames[name] = first_file.get(ROUND1_TABLES.get(name) or (match.group(2) if match else ""))
    return renames


def _rename_records(con: duckdb.DuckDBPyConnection, renames: dict[str, str | None]) -> None:
    con.execute("BEGIN TRANSACTION")
    for old, new in renames.items():
        if new:
            run(con, "warehouse/rename_record", new=new, old=old)
        else:
            run(con, "warehouse/forget_record", file=old)
    con.execute("COMMIT")


def _forget_removed(con: duckdb.DuckDBPyConnection, files: Sequence[SqlFile], applied: dict[str, str]) -> None:
    """Drop the records of view/macro files that moved or went away (table records are history)."""
    current = {f.path for f in files}
    gone = [p for p in applied if p not in current and not p.startswith(f"{TABLES}/")]
    if gone:
        run(con, "warehouse/forget_records", files=gone)


# -- documentation and declared tests (schema.yml per folder, in dbt's style) ------------------------

DOCS_FILE = "schema.yml"


@dataclass(frozen=True)
class DeclaredTest:
    """One test from a schema.yml: `sql` returns the offending rows, so it passes when it returns none."""

    object: str
    name: str
    sql: str


def load_docs(folder) -> dict[str, dict]:
    """Object name -> its schema.yml entry (name, description, columns, tests, example) from every folder."""
    import yaml

    docs: dict[str, dict] = {}
    for area in sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: d.name):
        entry_file = area / DOCS_FILE
        if area.name in NOT_APPLIED or not entry_file.is_file():
            continue
        content = yaml.safe_load(entry_file.read_text(encoding="utf-8"))
        for entry in content.get("objects", []):
            if entry["name"] in docs:
                raise FeatstoreError(f"sql/{area.name}/{DOCS_FILE} documents {entry['name']} again; keep one entry")
            docs[entry["name"]] = {**entry, "area": area.name, "inputs": content.get("example_inputs", {})}
    return docs


def relation(entry: dict) -> str:
    """The query whose rows an entry documents: its `example` (which may read its file's
    `example_inputs` as CTEs), else the view or table itself."""
    if not entry.get("example"):
        return f"SELECT * FROM {entry['name']}"
    inputs = ", ".join(f"{name} AS ({sql})" for name, sql in entry.get("inputs", {}).items())
    return f"WITH {inputs} {entry['example']}" if inputs else entry["example"]


def _literal_sql(value) -> str:
    return "'" + str(value).replace("'", "''") + "'" if isinstance(value, str) else str(value)


def _compile(rel: str, columns: list[str], test) -> tuple[str, str]:
    """(name, failing-rows SQL) of one declared test on `columns` of the relation `rel`."""
    kind, arg = next(iter(test.items())) if isinstance(test, dict) else (test, None)
    cols = ", ".join(columns)
    present = " AND ".join(f"{c} IS NOT NULL" for c in columns)
    base = f"FROM ({rel}) t"
    if kind == "not_null":
        return f"not_null({cols})", f"SELECT * {base} WHERE {columns[0]} IS NULL"
    if kind == "unique":
        return f"unique({cols})", f"SELECT {cols}, count(*) AS n {base} WHERE {present} GROUP BY ALL HAVING n > 1"
    if kind == "accepted_values":
        values = ", ".join(_literal_sql(v) for v in arg["values"])
        return f"accepted_values({cols})", f"SELECT DISTINCT {cols} {base} WHERE {present} AND {columns[0]} NOT IN ({values})"
    if kind == "relationships":
        target = f"SELECT 1 FROM {arg['to']} r WHERE r.{arg['field']} = t.{columns[0]}"
        return (f"relationships({cols} -> {arg['to']}.{arg['field']})",
                f"SELECT DISTINCT {cols} {base} WHERE {present} AND NOT EXISTS ({target})")
    raise FeatstoreError(f"unknown schema.yml test {kind!r}; use unique, not_null, accepted_values or relationships")


def declared_tests(docs: dict[str, dict]) -> list[DeclaredTest]:
    """Every test every schema.yml declares, on a column (`columns[].tests`) or on the object (`tests`)."""
    found = []
    for name, entry in docs.items():
        rel = relation(entry)
        for test in entry.get("tests", []):
            kind, columns = next(iter(test.items()))
            if kind != "unique":
                raise FeatstoreError(f"{name}: an object-level test is `unique: [columns]`; put {kind} on a column")
            found.append(DeclaredTest(name, *_compile(rel, list(columns), "unique")))
        for column in entry.get("columns", []):
            for test in column.get("tests", []):
                found.append(DeclaredTest(name, *_compile(rel, [column["name"]], test)))
    return found
