"""Named SQL statements: the files under `sql/queries/<area>/<name>.sql`, run by name.

`$name` parameters bind values; `{{name}}` splices a plain work-table name. The schema files
(tables, views, macros) live beside them under `sql/` and are applied by `featstore.warehouse.schema`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from featstore.errors import FeatstoreError


def sql_dir() -> Path:
    """The sql/ folder: inside the package (featstore/sql) when installed from a wheel, else the checkout's.

    A wheel's copy is looked for first: beside an installed package lies site-packages, not the checkout."""
    package = Path(__file__).resolve().parents[1]
    installed = package / "sql"
    return installed if installed.is_dir() else package.parent / "sql"


PARAMETER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
IDENTIFIER = re.compile(r"\{\{\s*(\w+)\s*\}\}")  # {{side}}: a name spliced into a table name, not a value
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@functools.cache
def sql(name: str) -> str:
    """The text of the named statement `sql/queries/<name>.sql`."""
    file = sql_dir().joinpath("queries", *f"{name}.sql".split("/"))
    if not file.is_file():
        raise FeatstoreError(f"no named query sql/queries/{name}.sql")
    return file.read_text()


@functools.cache
def statements(name: str) -> tuple[str, ...]:
    """The statements of a named query file, comments removed (the files hold no ';' inside strings)."""
    body = re.sub(r"--[^\n]*", "", sql(name))
    return tuple(s.strip() for s in body.split(";") if s.strip())


def run(con: duckdb.DuckDBPyConnection, name: str, /, **params: Any) -> duckdb.DuckDBPyConnection:
    """Execute every statement of a named query, each with the `$parameters` it names; returns the cursor."""
    cursor = con
    for statement in statements(name):
        statement = _spliced(statement, params)
        cursor = con.execute(statement, _named(statement, params))
    return cursor


def _spliced(statement: str, params: dict) -> str:
    """`{{name}}` replaced by params[name], a plain name (letters, digits, '_'), for table names."""
    def value(match: re.Match) -> str:
        text = str(params[match.group(1)])
        if not PLAIN_NAME.match(text):
            raise FeatstoreError(f"{text!r} cannot be part of a table name")
        return text

    return IDENTIFIER.sub(value, statement)


def _named(statement: str, params: dict) -> dict:
    """The `$parameters` a statement names (DuckDB refuses extra ones)."""
    return {k: params[k] for k in dict.fromkeys(PARAMETER.findall(statement))}


def rows(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    """A cursor's result as one dict per row."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def arrow(con: duckdb.DuckDBPyConnection, name: str, /, **params: Any) -> pa.Table:
    """A named read query's result as an Arrow table (its last statement's)."""
    *first, last = statements(name)
    try:
        for statement in first:
            statement = _spliced(statement, params)
            con.execute(statement, _named(statement, params))
        last = _spliced(last, params)
        return con.sql(last, params=_named(last, params) or None).to_arrow_table()
    except duckdb.Error as exc:
        raise FeatstoreError(f"query {name} failed: {str(exc).splitlines()[0]}") from exc


def reader(con: duckdb.DuckDBPyConnection, name: str, /, batch_rows: int, **params: Any) -> pa.RecordBatchReader:
    """A named read query's result streamed in record batches of up to `batch_rows` rows (its last statement's)."""
    *first, last = statements(name)
    for statement in first:
        statement = _spliced(statement, params)
        con.execute(statement, _named(statement, params))
    last = _spliced(last, params)
    return con.sql(last, params=_named(last, params) or None).to_arrow_reader(batch_rows)


def run_arrow(con: duckdb.DuckDBPyConnection, name: str, /, **params: Any) -> None:
    """Run a named statement that reads Arrow tables passed as parameters (registered under their names)."""
    tables = {k: v for k, v in params.items() if isinstance(v, pa.Table)}
    for key, table in tables.items():
        con.register(f"{key}_batch", table)
    try:
        run(con, name, **{k: v for k, v in params.items() if k not in tables})
    finally:
        for key in tables:
            con.unregister(f"{key}_batch")
