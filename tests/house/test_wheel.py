"""A normal, non-editable install works: the wheel built from this checkout, installed into a fresh
virtual environment, runs the CLI and imports every module from outside the checkout, so nothing
depends on `./featstore`, `./sql` or `./experiments` being beside it.

The fresh environment reuses the test environment's installed dependencies through a `.pth` line
(no second torch is fetched); a `.pth` line adds a folder without running that folder's own `.pth`
files, so the checkout's editable install stays invisible and only the wheel provides featstore.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


TOP_LEVEL_SKIPPED = {".git", ".venv", "build", "site", "warehouse", "tests", "benchmarks", "docs"}


def outside_the_package(folder: str, names: list[str]) -> set[str]:
    """What the wheel's build never needs: the top level's local folders, caches and old build metadata anywhere."""
    top = TOP_LEVEL_SKIPPED if Path(folder) == ROOT else set()
    return {n for n in names if n in top or n == "__pycache__" or n.endswith((".egg-info", "_cache"))}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh venv holding only the wheel (plus the test environment's dependencies)."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"  # a copy, so the build leaves no build/ folder in the checkout and reads no stale one
    shutil.copytree(ROOT, source, ignore=outside_the_package)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(base / "dist"),
                    str(source)], check=True, capture_output=True, text=True)
    wheel = next((base / "dist").glob("featstore-*.whl"))
    venv.create(base / "env", with_pip=True)
    python = base / "env" / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True).stdout.strip()
    (Path(site) / "test-environment.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "-q", str(wheel)],
                   check=True, capture_output=True, text=True)
    return python


def run(python: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
    return subprocess.run([str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_every_module_imports_from_the_wheel(installed, tmp_path):
    script = ("import importlib, json, pkgutil, featstore\n"
              "names = ['cli'] + [m.name for m in pkgutil.walk_packages(featstore.__path__, 'featstore.')]\n"
              "files = {n: importlib.import_module(n).__file__ for n in names}\n"
              "print(json.dumps(files))\n")
    done = run(installed, tmp_path, "-c", script)
    assert done.returncode == 0, done.stderr[-3000:]
    files = json.loads(done.stdout)
    site = str(installed.parent.parent)
    outside = {name: file for name, file in files.items() if not file.startswith(site)}
    assert not outside, f"modules not from the wheel: {outside}"
    stages = {"warehouse", "text", "models", "saes", "activations", "correlation", "crosscoders", "matching", "interpret", "report",
              "browser", "export", "pipeline"}
    assert stages <= {name.split(".")[1] for name in files if name.count(".") >= 1}
    assert "featstore.correlation.engines.sql" in files and "featstore.export.viewers.neuronpedia" in files


def test_cli_help_and_plan_from_the_wheel(installed, tmp_path):
    featstore = installed.parent / "featstore"
    assert featstore.exists(), "the wheel installed no featstore console script"
    shown = run(featstore, tmp_path, "--help")
    assert shown.returncode == 0 and "Usage: featstore" in shown.stdout, shown.stderr[-2000:]
    planned = run(featstore, tmp_path, "--warehouse", str(tmp_path / "wh"), "run", "--plan")
    assert planned.returncode == 0, planned.stdout[-2000:] + planned.stderr[-2000:]
    assert "train-base" in planned.stdout and "report" in planned.stdout
    assert not (tmp_path / "wh" / "featstore.duckdb").exists(), "--plan wrote a warehouse"
