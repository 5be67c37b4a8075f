"""SQL text lives in sql/: no Python string of featstore/ or cli.py holds a SQL statement, except an
f-string that assembles one from table or column names.

The checks parse each module with `ast` and look at every string constant and f-string (implicitly
concatenated pieces are one constant) other than docstrings that starts like a SQL statement (SELECT …,
INSERT INTO, DELETE FROM, UPDATE … SET, CREATE [OR REPLACE] TABLE|VIEW|MACRO, WITH name [(columns)] AS (,
DROP/ALTER TABLE, COPY). Two kinds fail:

- a multi-line one (spanning several source lines, or containing a line break), constant or f-string,
  its keyword in upper or lower case (not capitalised like the first word of a sentence);
- a static one (a plain string constant, not an f-string nor a piece of one) of any length, its keyword
  in upper case: a fixed statement is a named query.

Put the statement in sql/queries/<area>/<name>.sql (run by name with `$parameters` by
`featstore.warehouse.queries`) or in a view or macro. What may stay in Python is table-name plumbing:
a one-line f-string that splices table, column or work-database names (or a list of file paths) into
a statement that cannot take them as parameters. Session plumbing (SET, ATTACH, BEGIN/COMMIT) does not
start like a statement over data and is not checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

SQL_START = re.compile(
    r"""^\s*\(?\s*(
        select\s+(distinct\s+)?[\w*('"] |
        insert\s+(or\s+\w+\s+)?into\b |
        delete\s+from\b |
        update\s+[\w.]+(\s+\w+)?\s+set\b |
        create\s+(or\s+replace\s+)?(temp\s+|temporary\s+)?(table|view|macro|index|sequence)\b |
        with\s+(recursive\s+)?\w+(\s*\([\w\s,]*\))?\s+as\s+(not\s+)?(materialized\s+)?\( |
        (drop|alter)\s+(table|view|macro)\b |
        copy\s+[\w.(]
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def python_files() -> list[Path]:
    return sorted((REPO / "featstore").rglob("*.py")) + [REPO / "cli.py"]


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of the module, classes and functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                found.add(id(first.value))
    return found


def _text(node: ast.AST) -> str | None:
    """A string constant's text, or an f-string's with each placeholder written as {}."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _sql_strings(source: str) -> list[tuple[ast.AST, str, str]]:
    """(node, text, first keyword) of every string in `source` that starts like a SQL statement, the pieces
    of an f-string checked as one and docstrings left out."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)  # the pieces of an f-string are checked as one
    found = []
    for node in ast.walk(tree):
        text = _text(node)
        if text is None or id(node) in skip:
            continue
        match = SQL_START.match(text)
        if match:
            found.append((node, text, match.group(1).split()[0]))
    return sorted(found, key=lambda hit: (hit[0].lineno, hit[0].col_offset))


def static_sql(source: str) -> list[tuple[int, str]]:
    """(line, start of text) of every plain string constant in `source` that is a SQL statement (upper-case
    keyword): SQL that a named query should hold. f-strings (table-name plumbing) are not reported."""
    return [(node.lineno, " ".join(text.split())[:70]) for node, text, keyword in _sql_strings(source)
            if isinstance(node, ast.Constant) and keyword.isupper()]


def multiline_sql(source: str) -> list[tuple[int, str]]:
    """(line, start of text) of every multi-line string in `source` that looks like a SQL statement."""
    hits = []
    for node, text, keyword in _sql_strings(source):
        spans_lines = node.end_lineno > node.lineno or "\n" in text.strip()
        if spans_lines and (keyword.isupper() or keyword.islower()):  # "Select the …" is prose
            hits.append((node.lineno, " ".join(text.split())[:70]))
    return hits


def test_no_python_module_holds_multiline_sql():
    found = [f"{path.relative_to(REPO)}:{line}: {text}" for path in python_files()
             for line, text in multiline_sql(path.read_text())]
    assert not found, "multi-line SQL in Python; move it to sql/queries/ or a view:\n" + "\n".join(found)


def test_the_check_finds_what_it_should_and_only_that():
    source = '''
"""Module docstring: SELECT things from
several lines is prose here."""
a = ("SELECT x"
     " FROM t")
b = f"""
    insert into t
    values ({a})"""
c = "SELECT one FROM line"
d = ("Select the features you want, "
     "then run it again")
e = ("with --replace the old rows go; "
     "rerun")
def f():
    """UPDATE the docs; a docstring
    is never SQL."""
    return (f"UPDATE t SET x = {a}"
            " WHERE y")
'''
    assert [line for line, _ in multiline_sql(source)] == [4, 6, 17]


def test_no_python_module_holds_static_sql():
    found = [f"{path.relative_to(REPO)}:{line}: {text}" for path in python_files()
             for line, text in static_sql(path.read_text())]
    assert not found, ("SQL in a Python string constant; move it to sql/queries/<area>/<name>.sql and run it by name "
                       "(featstore.warehouse.queries.run):\n" + "\n".join(found))


def test_the_static_check_finds_constants_and_not_f_strings():
    assert static_sql('x = "SELECT 1 FROM t"') == [(1, "SELECT 1 FROM t")]
    assert static_sql("x = f\"SELECT 1 FROM {table}\"") == []
    source = '''
"""SELECT things: a module docstring is prose."""
a = "INSERT INTO t VALUES (?)"
b = f"DELETE FROM {a} WHERE x = ?"
c = f"SELECT * FROM {a}" if a else "SELECT 'none' AS kind"
d = "Select the features you want"
e = "select one from line"
f = "WITH RECURSIVE d(m) AS (SELECT 1) SELECT list(m) FROM d"
g = "SET threads = 1"
def h():
    """UPDATE the docs: never SQL."""
    return ("COPY (SELECT 1) TO 'x.parquet'"
            " (FORMAT parquet)")
'''
    assert [line for line, _ in static_sql(source)] == [3, 5, 8, 12]
