"""The SQL page: one read-only statement, refused unless it only reads; the saved views' documentation.

The connection (data.connect_read_only) already cannot write the catalog or touch files outside
the activation partitions; the statement check adds a clear refusal for writes and `COPY … TO`,
which a read-only DuckDB would otherwise run against the allowed folder.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import duckdb
import pyarrow as pa

from featstore.browser.data import query_text
from featstore.warehouse import sql_dir

MAX_ROWS = 1000
TIMEOUT_SECONDS = 30.0


class Refused(Exception):
    """A statement the SQL page does not run; the message says why."""


def run_query(con: duckdb.DuckDBPyConnection, sql: str, limit: int | None = MAX_ROWS,
              timeout: float = TIMEOUT_SECONDS) -> pa.Table:
    """Run one reading statement, interrupted after `timeout` seconds (a running query holds the
    catalog's read lock, which would keep ingest waiting); DuckDB's own error propagates as duckdb.Error."""
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise Refused(f"give exactly one statement (got {len(statements)})")
    kind = statement_kind(sql, statements[0].type)
    if kind is not duckdb.StatementType.SELECT:
        raise Refused(f"{kind.name} statements are refused: the SQL page is read-only (SELECT, WITH … SELECT, EXPLAIN)")
    timer = threading.Timer(timeout, con.interrupt)
    timer.start()
    try:
        relation = con.sql(sql)
        if limit is not None:
            relation = relation.limit(limit + 1)
        return relation.to_arrow_table()
    finally:
        timer.cancel()


EXPLAIN = re.compile(r"^\s*explain\s+(analy[sz]e\s+)?", re.I)


def statement_kind(sql: str, kind: duckdb.StatementType) -> duckdb.StatementType:
    """The statement's type, looking through EXPLAIN (EXPLAIN ANALYZE runs what it explains)."""
    if kind is duckdb.StatementType.EXPLAIN:
        inner = duckdb.extract_statements(EXPLAIN.sub("", sql, count=1))
        return inner[0].type if len(inner) == 1 else kind
    return kind


OBJECT = re.compile(r"create\s+or\s+replace\s+(?:temp\s+)?(view|macro)\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)


def saved_objects(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every view and macro of the warehouse with the documentation found for it in sql/."""
    docs = object_docs()
    found = con.execute(query_text("saved_objects")).fetchall()
    return [{"name": name, "kind": kind, **docs.get(name, {"doc": "", "file": None})} for name, kind in found]


def object_docs() -> dict[str, dict]:
    """name -> {doc, file}: a schema.yml description where one exists, else the file's leading comment."""
    root = Path(str(sql_dir()))
    docs = {}
    for path in sorted(root.rglob("*.sql")):
        if "queries" in path.relative_to(root).parts:
            continue
        text = path.read_text()
        comment = " ".join(line[2:].strip() for line in text.splitlines() if line.startswith("--"))
        for _, name in OBJECT.findall(text):
            docs.setdefault(name, {"doc": comment, "file": str(path.relative_to(root))})
    for schema in sorted(root.rglob("schema.yml")):
        for name, doc in _schema_descriptions(schema).items():
            docs.setdefault(name, {"file": str(schema.relative_to(root))})["doc"] = doc
    return docs


def _schema_descriptions(path: Path) -> dict[str, str]:
    """Object descriptions of a dbt-style schema.yml (`models:` or `objects:` lists with name/description)."""
    try:
        import yaml
    except ImportError:
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    entries = [e for key in ("models", "objects", "views", "macros") for e in (data.get(key) or [])]
    return {e["name"]: str(e.get("description", "")).strip() for e in entries if isinstance(e, dict) and "name" in e
            and e.get("description")}
