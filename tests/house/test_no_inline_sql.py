"""SQL text lives in sql/: no Python string of featstore/ or cli.py holds a multi-line SQL statement.

The check parses each module with `ast` and looks at every string constant and f-string (implicitly
concatenated pieces are one constant) other than docstrings. One that spans several source lines,
or contains a line break, and starts like a SQL statement (SELECT …, INSERT INTO, DELETE FROM,
UPDATE … SET, CREATE [OR REPLACE] TABLE|VIEW|MACRO, WITH name AS (, DROP/ALTER TABLE, COPY; the
keyword in upper or lower case, not capitalised like the first word of a sentence) fails the test: put it in sql/queries/<entity>/<name>.sql (featstore.warehouse.tables loads it by name) or in a view or macro.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import REPO

SQL_START = re.compile(
    r"""^\s*\(?\s*(
        select\s+(distinct\s+)?[\w*(] |
        insert\s+(or\s+\w+\s+)?into\b |
        delete\s+from\b |
        update\s+[\w.]+(\s+\w+)?\s+set\b |
        create\s+(or\s+replace\s+)?(temp\s+|temporary\s+)?(table|view|macro|index|sequence)\b |
        with\s+(recursive\s+)?\w+\s+as\s+(not\s+)?(materialized\s+)?\( |
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


def multiline_sql(source: str) -> list[tuple[int, str]]:
    """(line, start of text) of every multi-line string in `source` that looks like a SQL statement."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)  # the pieces of an f-string are checked as one
    hits = []
    for node in ast.walk(tree):
        text = _text(node)
        if text is None or id(node) in skip:
            continue
        spans_lines = node.end_lineno > node.lineno or "\n" in text.strip()
        match = SQL_START.match(text)
        keyword = match.group(1).split()[0] if match else ""
        if spans_lines and match and (keyword.isupper() or keyword.islower()):  # "Select the …" is prose
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
