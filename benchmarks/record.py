"""One benchmark run as a reproducible record: a JSON file beside the printed lines.

Each script in benchmarks/ ends with `write_record(...)`, which writes `<out_dir>/<name>.json` (replacing
that benchmark's previous record, atomically) with the benchmark's name, the command line that ran it,
when and on what machine (platform, processor, cores, memory, GPU, load average at start and end), with
which versions and which git commit (and whether the tree had uncommitted changes), the settings (sizes,
arguments), the figures (seconds, MB, counts) and the ratios against the reference measured in the same
run. `load_records(folder)` reads a folder of them back (docs/benchmarks/ holds the full-size ones).

Every script also takes `--smoke` (micro sizes, seconds in all) and `--out DIR` through `parse_args`:
full size writes into docs/benchmarks/ unless told otherwise; a smoke run writes into a fresh
temporary folder unless told otherwise, so it never replaces a real record.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RECORDS = REPO / "docs" / "benchmarks"
LOAD_AT_IMPORT = os.getloadavg()  # the fallback start load: the scripts import this module first thing


# -- command line ----------------------------------------------------------------------------------


def parse_args(parser: argparse.ArgumentParser, smoke: dict[str, Any], argv: list[str] | None = None) -> argparse.Namespace:
    """`parser`'s arguments plus --smoke and --out; with --smoke, `smoke` replaces the defaults (flags given still win).

    `args.out` is the folder the record goes to: docs/benchmarks/ at full size, a fresh temporary folder
    with --smoke, or --out.
    """
    parser.add_argument("--smoke", action="store_true", help="micro sizes (the whole script in seconds); the record goes to"
                        " a fresh temporary folder unless --out is given")
    parser.add_argument("--out", type=Path, default=None, help=f"folder of the JSON record [default: {RECORDS.relative_to(REPO)}/,"
                        " with --smoke a fresh temporary folder]")
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--smoke", action="store_true")
    known, _ = pre.parse_known_args(argv)
    if known.smoke:
        parser.set_defaults(**smoke)
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="featstore-bench-smoke-")) if args.smoke else RECORDS
    return args


def settings_of(args: argparse.Namespace, *skip: str) -> dict:
    """The parsed arguments as JSON-able settings (paths as strings), less `out` and `skip`."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in {"out", *skip}}


# -- the record ------------------------------------------------------------------------------------


def command_line(argv: list[str] | None = None) -> str:
    """The command as one would type it from the repository root: `python benchmarks/<script>.py ...`
    (`benchmarks/gpu/<script>.py` for a script of a subfolder)."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    where = script.parent.relative_to(REPO) if script.parent.is_relative_to(REPO / "benchmarks") else Path("benchmarks")
    return shlex.join(["python", f"{where.as_posix()}/{script.name}", *argv[1:]])


def total_memory_gb() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 2)
    except OSError:
        return None
    return None


def gpu_name() -> str | None:
    """The first CUDA device's name when torch is installed and sees one."""
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "memory_gb": total_memory_gb(), "gpu": gpu_name()}


def versions() -> dict:
    """python and the libraries the benchmarks rest on; numba, scipy, pyspark only where installed."""
    out = {"python": platform.python_version()}
    for package in ("featstore", "torch", "duckdb", "numpy", "pyarrow"):
        out[package] = _version(package)
    for package in ("numba", "scipy", "pyspark"):
        if importlib.util.find_spec(package) is not None:
            out[package] = _version(package)
    return out


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(package)
        return getattr(module, "__version__", None)


def git_commit(repo: Path = REPO) -> dict:
    """{"sha": HEAD, "dirty": uncommitted changes}; both None when `repo` is not a git checkout (or git is missing)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=60)
        if sha.returncode != 0:
            return {"sha": None, "dirty": None}
        # the records themselves are not the code measured: a run after another benchmark is not "dirty"
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":(exclude)docs/benchmarks"], cwd=repo,
                                capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return {"sha": None, "dirty": None}
    return {"sha": sha.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def _plain(value: Any) -> Any:
    """JSON-able: numpy scalars to Python numbers, paths and other objects to strings, NaN and inf to None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item"):  # numpy / torch scalars
        return _plain(value.item())
    return str(value)


def write_record(name: str, figures: dict, ratios: dict, settings: dict, out_dir: Path, *,
                 load_start: tuple[float, float, float] | None = None, tables: dict[str, list[dict]] | None = None) -> Path:
    """Write `out_dir/<name>.json` (replacing the previous one atomically) and return its path.

    `load_start` is os.getloadavg() when the benchmark began (default: when this module was imported);
    the load at the end is read here. `tables` (name -> rows) holds results that are rows rather than
    single figures (per step, per model); the docs page draws each as a table.
    """
    record = {
        "name": name,
        "command": command_line(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "load_average": {"start": [round(x, 2) for x in load_start or LOAD_AT_IMPORT],
                         "end": [round(x, 2) for x in os.getloadavg()]},
        "versions": versions(),
        "commit": git_commit(),
        "settings": settings,
        "figures": figures,
        "ratios": ratios,
        **({"tables": tables} if tables else {}),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    text = json.dumps(_plain(record), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"record: {path}")
    return path


def load_records(folder: Path = RECORDS) -> list[dict]:
    """Every record in `folder` (its *.json files that carry a benchmark name), sorted by name."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "name" in data and "figures" in data:
            records.append(data)
    return sorted(records, key=lambda r: r["name"])
