"""Every query the docs show, in the DuckDB shell users have (`duckdb-cli`) against the library's duckdb.

The queries are collected, not listed by hand: each statement of the ```sql blocks and each
`duckdb … -c "…"` / `featstore sql "…"` argument in README.md and docs/*.md, the report's named
queries (sql/queries/report/, parameters filled from the warehouse), and the views and macros the
docs' Schema page leads with (persistence, persistence_summary, merge_inheritance, feature_families,
seed_floor, method_agreement). Each runs `--repeat` times in a fresh `duckdb -readonly` process (timed
by the shell's own `.timer`) and on a fresh read-only connection of the Python package (timed around
execute and fetch); the figures are the median wall and CPU seconds of the statement on each side,
the ratios shell / library (times under 10 ms count as 10 ms), and both must return as many rows.

    python benchmarks/shell.py                        # on ./warehouse after `make run`
    python benchmarks/shell.py --warehouse /tmp/wh --repeat 5
    python benchmarks/shell.py --smoke                # a synthetic micro warehouse: seconds

The figures go into a JSON record (benchmarks/record.py; docs/benchmarks/shell.json at full size).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import build  # noqa: E402
from record import REPO, parse_args, settings_of, write_record  # noqa: E402

from featstore.warehouse.core import DB_FILE  # noqa: E402

NAMED_VIEWS = ("persistence", "persistence_summary", "merge_inheritance", "feature_families", "seed_floor",
               "method_agreement()")
SKIPPED_REPORT_QUERIES = {"defined"}  # a catalog lookup with a list parameter, not a query users type
INLINE = re.compile(r'(?:duckdb\s[^"\n]*-c|featstore sql)\s+"([^"]+)"')
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)
TIMER = re.compile(r"Run Time \(s\): real (?P<real>[\d.]+) user (?P<user>[\d.]+) sys (?P<sys>[\d.]+)")


def doc_queries() -> dict[str, str]:
    """name -> SQL of every read statement shown in the README and the docs pages."""
    found = {}
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = page.read_text()
        pieces = [*SQL_BLOCK.findall(text), *INLINE.findall(text)]
        statements = [s.query.strip() for piece in pieces for s in duckdb.extract_statements(piece)]
        for n, sql in enumerate(s for s in statements if re.match(r"(?i)(select|with)\b", s)):
            found[f"{page.stem}#{n + 1}"] = sql
    return found


def literal(value) -> str:
    return str(value) if isinstance(value, (int, float)) else "'" + str(value).replace("'", "''") + "'"


def report_queries(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """name -> SQL of the report's named queries, $parameters replaced by values this warehouse has."""
    sae, corpus = con.execute("SELECT sae, corpus FROM activation_partitions ORDER BY sae, corpus LIMIT 1").fetchone() or ("", "")
    sweep = con.execute("SELECT model_a, model_b, method FROM merge_sweep LIMIT 1").fetchone() or ("", "", "")
    values = {"n": 3, "limit": 10, "sae": sae, "feature": 0, "corpus": corpus, "width": 8,
              "model_a": sweep[0], "model_b": sweep[1], "method": sweep[2]}
    found = {}
    for path in sorted((REPO / "sql" / "queries" / "report").glob("*.sql")):
        if path.stem not in SKIPPED_REPORT_QUERIES:
            found[f"report/{path.stem}"] = re.sub(r"\$(\w+)", lambda m: literal(values[m.group(1)]), path.read_text())
    return found


def all_queries(db: Path) -> dict[str, str]:
    with duckdb.connect(str(db), read_only=True) as con:
        reports = report_queries(con)
    views = {name: f"SELECT * FROM {name}" for name in NAMED_VIEWS}
    return {**views, **doc_queries(), **reports}


def run_shell(shell: str, db: Path, sql: str) -> tuple[float, float, int]:
    """Wall and CPU seconds of `sql` in a fresh shell process, as its `.timer` reports them, and its rows."""
    done = subprocess.run([shell, "-readonly", "-csv", "-bail", str(db), "-c", ".timer on", "-c", sql],
                          capture_output=True, text=True)
    timer = TIMER.search(done.stdout)
    if done.returncode or done.stderr.strip() or not timer:
        raise RuntimeError(f"the shell failed on {sql!r}: {(done.stderr or done.stdout).strip()[:300]}")
    rows = len(list(csv.reader(done.stdout[:timer.start()].splitlines())))
    return float(timer["real"]), float(timer["user"]) + float(timer["sys"]), max(rows - 1, 0)


def run_library(db: Path, sql: str) -> tuple[float, float, int]:
    """Wall and CPU seconds (all of DuckDB's threads) of `sql` on a fresh read-only connection, and its rows."""
    with duckdb.connect(str(db), read_only=True) as con:
        wall, cpu = time.perf_counter(), time.process_time()
        rows = len(con.execute(sql).fetchall())
        return time.perf_counter() - wall, time.process_time() - cpu, rows


def medians(runs: list[tuple[float, float, int]]) -> tuple[float, float]:
    return round(statistics.median(r[0] for r in runs), 4), round(statistics.median(r[1] for r in runs), 4)


def ratio(shell: float, library: float) -> float:
    """shell / library, both floored at 10 ms: below that a query is instant either way."""
    return round(max(shell, 0.01) / max(library, 0.01), 2)


def shell_version(shell: str) -> str:
    return subprocess.run([shell, "-version"], capture_output=True, text=True).stdout.split()[0]


def find_shell() -> str:
    """The `duckdb` executable beside this Python (the test extra's duckdb-cli), else on PATH."""
    beside = Path(sys.executable).parent / "duckdb"
    shell = str(beside) if beside.exists() else shutil.which("duckdb")
    if not shell:
        sys.exit("error: no `duckdb` shell found; pip install duckdb-cli")
    return shell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=REPO / "warehouse", help="a finished warehouse [default: ./warehouse]")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each query on each side (median kept)")
    args = parse_args(parser, smoke={"repeat": 1})
    load_start = os.getloadavg()
    shell = find_shell()
    if args.smoke:
        args.warehouse = Path(tempfile.mkdtemp(prefix="featstore-shell-")) / "wh"
        build(args.warehouse, features=64, tokens=400, active=4, d_in=16)
    db = args.warehouse / DB_FILE
    queries = all_queries(db)
    figures, ratios = {"queries": len(queries)}, {}
    print(f"{len(queries)} queries, shell {shell_version(shell)} vs duckdb {duckdb.__version__} (Python), "
          f"median of {args.repeat}, the statement alone (no process start, no connection)")
    for name, sql in queries.items():
        shell_runs = [run_shell(shell, db, sql) for _ in range(args.repeat)]
        library_runs = [run_library(db, sql) for _ in range(args.repeat)]
        if shell_runs[0][2] != library_runs[0][2]:
            sys.exit(f"error: {name}: the shell returned {shell_runs[0][2]} rows, the library {library_runs[0][2]}")
        (shell_s, shell_cpu), (library_s, library_cpu) = medians(shell_runs), medians(library_runs)
        figures.update({f"{name} shell_s": shell_s, f"{name} library_s": library_s,
                        f"{name} shell_cpu_s": shell_cpu, f"{name} library_cpu_s": library_cpu})
        ratios[f"{name} shell/library"] = ratio(shell_s, library_s)
        ratios[f"{name} shell/library cpu"] = ratio(shell_cpu, library_cpu)
        print(f"{name:30s} {shell_runs[0][2]:>7,} rows  shell {shell_s:7.3f} s  library {library_s:7.3f} s  "
              f"ratio {ratios[f'{name} shell/library']:5.2f}  (cpu {ratios[f'{name} shell/library cpu']:5.2f})")
    ratios["worst shell/library"] = max(v for k, v in ratios.items() if k.endswith("shell/library"))
    ratios["worst shell/library cpu"] = max(v for k, v in ratios.items() if k.endswith("cpu"))
    print(f"worst ratio {ratios['worst shell/library']:.2f} wall, {ratios['worst shell/library cpu']:.2f} cpu (target <= 2)")
    settings = {**settings_of(args), "shell_version": shell_version(shell), "library_version": duckdb.__version__}
    write_record("shell", figures, ratios, settings, args.out, load_start=load_start)


if __name__ == "__main__":
    main()
