"""Every benchmark runs at smoke size and leaves one reproducible record (benchmarks/record.py).

Each script in benchmarks/ (record.py aside) is run as a user would, `python benchmarks/<script>.py
--smoke --out <tmp>`, from the repository root and offline; it must exit 0 and write exactly one JSON
record with the keys the docs page reads and at least one finite figure and one finite ratio.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "record.py")
KEYS = ("name", "command", "machine", "load_average", "versions", "commit", "settings", "figures", "ratios")


def _record_module():
    spec = importlib.util.spec_from_file_location("benchmarks_record", BENCHMARKS / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _finite_numbers(values: dict) -> list:
    return [v for v in values.values() if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _missing_tool(script: str) -> str | None:
    """Why a script cannot run here (a tool it needs is absent), or None."""
    if script == "spark_scaling.py":
        if importlib.util.find_spec("pyspark") is None:
            return "pyspark is not installed (pip install featstore[spark])"
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            return "no Java runtime (Spark needs Java 17+)"
    if script == "correlate.py" and importlib.util.find_spec("scipy") is None:
        return "scipy (the reference of benchmarks/correlate.py) is not installed"
    return None


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke_writes_one_record(script, tmp_path):
    reason = _missing_tool(script)
    if reason:
        pytest.skip(reason)
    out = tmp_path / "records"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = sorted(out.glob("*.json"))
    assert len(records) == 1, list(out.iterdir())
    assert not [p for p in out.iterdir() if p.suffix != ".json"], "a temporary file was left beside the record"
    record = json.loads(records[0].read_text())
    assert not [k for k in KEYS if k not in record], record.keys()
    # named after the script, or after it and what it measured (sae_train_1024x16: one record per shape)
    assert record["name"] == records[0].stem and f"{record['name']}_".startswith(f"{Path(script).stem}_")
    assert record["command"].startswith(f"python benchmarks/{script} --smoke")
    assert record["settings"]["smoke"] is True
    assert _finite_numbers(record["figures"]), record["figures"]
    assert _finite_numbers(record["ratios"]), record["ratios"]
    assert f"record: {records[0]}" in done.stdout  # the printed lines stay, the record's path among them


def test_write_record_is_atomic_and_read_back(tmp_path, monkeypatch):
    record = _record_module()
    monkeypatch.setattr(sys, "argv", ["/somewhere/benchmarks/example.py", "--smoke", "--tokens", "10"])
    path = record.write_record("example", {"seconds": 1.5, "rows": 3, "nan": float("nan")}, {"ours_over_ref": 0.5},
                               {"tokens": 10, "dir": Path("/x")}, tmp_path, load_start=(1.0, 2.0, 3.0))
    assert path == tmp_path / "example.json"
    first = json.loads(path.read_text())
    assert first["command"] == "python benchmarks/example.py --smoke --tokens 10"
    assert first["load_average"]["start"] == [1.0, 2.0, 3.0] and len(first["load_average"]["end"]) == 3
    assert first["figures"] == {"seconds": 1.5, "rows": 3, "nan": None}  # strict JSON: NaN written as null
    assert first["settings"] == {"tokens": 10, "dir": "/x"}
    assert {"python", "featstore", "torch", "duckdb", "numpy", "pyarrow"} <= first["versions"].keys()
    assert {"platform", "processor", "cpu_count", "memory_gb", "gpu"} <= first["machine"].keys()
    assert set(first["commit"]) == {"sha", "dirty"}

    # A second record of the same benchmark replaces the first through os.replace, never a half-written file.
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        assert Path(src).parent == tmp_path and Path(src) != path
        assert json.loads(Path(src).read_text())["figures"]["seconds"] == 2.5  # complete before it takes the name
        replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(record.os, "replace", spy)
    record.write_record("example", {"seconds": 2.5}, {"ours_over_ref": 0.4}, {}, tmp_path)
    assert replaced == [path]
    assert [p.name for p in tmp_path.iterdir()] == ["example.json"]

    # A failing write leaves the previous record whole and no temporary file behind.
    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(record.os, "replace", broken)
    with pytest.raises(OSError):
        record.write_record("example", {"seconds": 9.0}, {}, {}, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["example.json"]
    monkeypatch.setattr(record.os, "replace", real_replace)

    record.write_record("another", {"seconds": 1.0}, {"r": 1.0}, {}, tmp_path, tables={"steps": [{"step": "a", "seconds": 1.0}]})
    (tmp_path / "notes.json").write_text("[1, 2]")  # not a record: ignored
    loaded = record.load_records(tmp_path)
    assert [r["name"] for r in loaded] == ["another", "example"]
    assert loaded[1]["figures"] == {"seconds": 2.5} and "tables" not in loaded[1]
    assert loaded[0]["tables"] == {"steps": [{"step": "a", "seconds": 1.0}]}


def test_a_script_in_a_subfolder_is_named_with_its_folder():
    record = _record_module()
    script = str(record.REPO / "benchmarks" / "gpu" / "paper.py")
    assert record.command_line([script, "collect", "--rehearse"]) == "python benchmarks/gpu/paper.py collect --rehearse"
    assert record.command_line(["/elsewhere/example.py", "--smoke"]) == "python benchmarks/example.py --smoke"


def test_commit_is_none_outside_a_checkout(tmp_path):
    assert _record_module().git_commit(tmp_path) == {"sha": None, "dirty": None}


def test_only_changes_outside_the_records_make_a_checkout_dirty(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "code")
    commit = _record_module().git_commit
    (tmp_path / "docs" / "benchmarks").mkdir(parents=True)
    (tmp_path / "docs" / "benchmarks" / "other.json").write_text("{}")  # an earlier benchmark's new record
    assert commit(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert commit(tmp_path)["dirty"] is True


def test_smoke_output_defaults_to_a_fresh_folder_never_the_records(monkeypatch):
    import argparse

    record = _record_module()
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    args = record.parse_args(parser, smoke={"tokens": 10}, argv=["--smoke"])
    assert args.tokens == 10 and args.out != record.RECORDS and args.out.is_dir() and not any(args.out.iterdir())
    args.out.rmdir()
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    args = record.parse_args(parser, smoke={"tokens": 10}, argv=["--smoke", "--tokens", "20"])
    assert args.tokens == 20  # a flag given wins over the smoke size
    args.out.rmdir()
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    args = record.parse_args(parser, smoke={"tokens": 10}, argv=[])
    assert args.tokens == 1000 and args.out == ROOT / "docs" / "benchmarks"
