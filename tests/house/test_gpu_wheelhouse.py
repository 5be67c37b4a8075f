"""benchmarks/gpu/wheelhouse.py plans the wheels the GPU image lacks from the metadata installed here.

Offline throughout: only the plan is made (never `pip download`), and the subprocesses run with pip's
index switched off. The test environment holds no `paper` extra, so mistral-common is a stand-in here:
its metadata alone (the main requirements of the real 1.13.1), first on the path.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import pytest
from helpers import REPO
from packaging.requirements import Requirement

SCRIPT = REPO / "benchmarks" / "gpu" / "wheelhouse.sh"
MISTRAL_COMMON = """Metadata-Version: 2.4
Name: mistral_common
Version: 1.13.1
Requires-Dist: pydantic<3.0,>=2.12
Requires-Dist: jsonschema>=4.21.1
Requires-Dist: tiktoken>=0.7.0; python_version <= "3.13"
Requires-Dist: numpy<2.4,>=1.25; python_version <= "3.12"
Requires-Dist: pydantic-extra-types[pycountry]>=2.10.5
Requires-Dist: sentencepiece>=0.2.0; extra == "sentencepiece"
"""


def _wheelhouse():
    spec = importlib.util.spec_from_file_location("gpu_wheelhouse", REPO / "benchmarks" / "gpu" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheelhouse = _wheelhouse()
TARGET = wheelhouse.target_environment(wheelhouse.IMAGE_PYTHON)
HAVE = wheelhouse.read_have(wheelhouse.HERE / "target-packages.txt")


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A folder whose only content is mistral-common's metadata, as `pip install` leaves it."""
    root = tmp_path_factory.mktemp("stand_in")
    (root / "mistral_common-1.13.1.dist-info").mkdir()
    (root / "mistral_common-1.13.1.dist-info" / "METADATA").write_text(MISTRAL_COMMON)
    return root


@pytest.fixture(autouse=True)
def paper_extra(stand_in, monkeypatch):
    """The stand-in first on the path, in this process and in the script's subprocesses."""
    monkeypatch.syspath_prepend(str(stand_in))
    monkeypatch.setenv("PYTHONPATH", str(stand_in))


def _plan(have: set[str]) -> dict[str, str]:
    return wheelhouse.plan(wheelhouse.featstore_requirements(), have, TARGET)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PIP_NO_INDEX": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_plan_holds_what_the_image_lacks_pinned_to_the_versions_here():
    pins = _plan(HAVE)
    assert {"duckdb", "datasets", "flask", "waitress", "mistral-common"} <= pins.keys()
    # held by the image, skipped on purpose (polars and its runtime), or only needed by mistral-common's code
    assert not {"torch", "numpy", "transformers", "pyarrow", "polars", "polars-runtime-32", "pydantic",
                "jsonschema", "pydantic-extra-types"} & pins.keys()
    assert pins == {name: importlib.metadata.version(name) for name in pins}


def test_a_package_the_image_lacks_joins_the_plan():
    pins = _plan(HAVE - {"numpy"})
    assert pins["numpy"] == importlib.metadata.version("numpy")


def test_markers_are_judged_for_the_target_python_not_this_one():
    roots = [Requirement('tomli; python_version < "3.11"'), Requirement('blinker; python_version >= "3.12"'),
             Requirement('flask; extra == "server"')]
    assert wheelhouse.plan(roots, set(), TARGET) == {"blinker": importlib.metadata.version("blinker")}


def test_a_requirement_not_installed_here_says_how_to_install_it():
    with pytest.raises(wheelhouse.Problem, match=r"no-such-featstore-package .*pip install -e \.\[paper\]"):
        wheelhouse.plan([Requirement("no-such-featstore-package")], set(), TARGET)


def test_freeze_lines_read_as_bare_names(tmp_path):
    freeze = tmp_path / "freeze.txt"
    freeze.write_text("# pip list --format=freeze\n" + "".join(f"{name.upper()}==1.0\n" for name in sorted(HAVE)))
    assert wheelhouse.read_have(freeze) == HAVE
    (tmp_path / "odd.txt").write_text("Typing_Extensions==4.1  # note\n\nzope.interface\n")
    assert wheelhouse.read_have(tmp_path / "odd.txt") == {"typing-extensions", "zope-interface"}


def test_wheels_outside_the_plan_are_cleared(tmp_path):
    kept = "duckdb-2.0.1-cp312-abi3-manylinux_2_28_x86_64.whl"
    for name in (kept, "duckdb-1.4.0-cp312-abi3-manylinux_2_28_x86_64.whl", "polars-1.0.0-py3-none-any.whl"):
        (tmp_path / name).touch()
    wheelhouse.clear_stale(tmp_path, {"duckdb": "2.0.1"})
    assert [p.name for p in tmp_path.iterdir()] == [kept]


def test_plan_through_the_script_downloads_nothing(tmp_path):
    done = _run("--plan", "--dest", str(tmp_path / "wheels"))
    assert done.returncode == 0, done.stderr
    assert f"duckdb=={importlib.metadata.version('duckdb')}" in done.stdout.splitlines()
    assert not (tmp_path / "wheels").exists()


def test_a_missing_package_list_is_one_error_line(tmp_path):
    done = _run("--plan", "--have", str(tmp_path / "absent.txt"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr
