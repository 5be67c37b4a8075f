"""benchmarks/gpu/wheelhouse.py plans the wheels the GPU image lacks from the metadata installed here.

Offline throughout: only the plan is made (never `pip download`; where the build runs, pip_download is
replaced by a stand-in that writes tiny wheels), and the subprocesses run with pip's index switched off.
mistral-common is file-only: not a wheel, its tokenizer file taken out of a wheel built here in tmp_path.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SCRIPT = REPO / "benchmarks" / "gpu" / "wheelhouse.sh"
TOKENIZER = "mistral_common/data/tokenizer.model.v1"


def _wheelhouse():
    spec = importlib.util.spec_from_file_location("gpu_wheelhouse", REPO / "benchmarks" / "gpu" / "wheelhouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


wheelhouse = _wheelhouse()
TARGET = wheelhouse.target_environment(wheelhouse.IMAGE_PYTHON)
HAVE = wheelhouse.read_have(wheelhouse.HERE / "target-packages.txt")


def _wheel(path, members: dict[str, bytes]):
    """A zip standing in for a wheel, holding the given members."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _mistral_common_here(monkeypatch, version: str | None) -> None:
    """mistral-common installed here at version (None: not installed); every other package as it is."""
    real = wheelhouse.local_version
    monkeypatch.setattr(wheelhouse, "local_version", lambda name: version if name == "mistral-common" else real(name))


def _plan(have: set[str]) -> dict[str, str]:
    return wheelhouse.plan(wheelhouse.featstore_requirements(), have, TARGET)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "PIP_NO_INDEX": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def test_plan_holds_what_the_image_lacks_pinned_to_the_versions_here():
    pins = _plan(HAVE)
    assert {"duckdb", "datasets", "flask", "waitress"} <= pins.keys()
    # held by the image, skipped on purpose (polars and its runtime), file-only (mistral-common), or only
    # needed by mistral-common's code, which is not installed
    assert not {"torch", "numpy", "transformers", "pyarrow", "polars", "polars-runtime-32", "mistral-common",
                "pydantic", "jsonschema", "pydantic-extra-types", "pycountry", "tiktoken"} & pins.keys()
    assert pins == {name: importlib.metadata.version(name) for name in pins}


def test_mistral_common_is_planned_as_its_tokenizer_file_alone(monkeypatch):
    _mistral_common_here(monkeypatch, None)
    files = wheelhouse.plan_files(wheelhouse.featstore_requirements(), HAVE, TARGET)
    assert files == {"mistral-common": wheelhouse.DataFile("mistral-common", TOKENIZER, False)}
    assert files["mistral-common"].filename == "tokenizer.model.v1"
    assert files["mistral-common"].plan_line() == "mistral-common (tokenizer.model.v1 only; newest)"
    # the image holding it plans nothing; a version installed here is the pin
    assert wheelhouse.plan_files(wheelhouse.featstore_requirements(), HAVE | {"mistral-common"}, TARGET) == {}
    _mistral_common_here(monkeypatch, "1.13.1")
    (data,) = wheelhouse.plan_files([Requirement("mistral-common[image]>=1.5")], set(), TARGET).values()
    assert data.plan_line() == "mistral-common==1.13.1 (tokenizer.model.v1 only)"


def test_a_file_only_requirement_keeps_its_specifier_unpinned_and_its_dependencies_unwalked(monkeypatch):
    _mistral_common_here(monkeypatch, None)
    roots = [Requirement("mistral-common>=1.5"), Requirement('mistral-common<2; python_version >= "3.12"')]
    assert wheelhouse.plan(roots, set(), TARGET) == {}
    assert wheelhouse.plan_files(roots, set(), TARGET)["mistral-common"].requirement == "mistral-common<2,>=1.5"


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
    for name in (kept, "duckdb-1.4.0-cp312-abi3-manylinux_2_28_x86_64.whl", "polars-1.0.0-py3-none-any.whl",
                 "mistral_common-1.13.1-py3-none-any.whl", ".tokenizer.model.v1.x1y2.part"):
        (tmp_path / name).touch()
    wheelhouse.clear_stale(tmp_path, {"duckdb": "2.0.1"})
    assert [p.name for p in tmp_path.iterdir()] == [kept]


def test_a_file_only_file_is_kept_while_planned_and_cleared_after(tmp_path):
    (tmp_path / "tokenizer.model.v1").write_bytes(b"sp")
    data = wheelhouse.DataFile("mistral-common", TOKENIZER, False)
    wheelhouse.clear_stale(tmp_path, {}, {"mistral-common": data})
    assert (tmp_path / "tokenizer.model.v1").read_bytes() == b"sp"
    wheelhouse.clear_stale(tmp_path, {}, {})
    assert not any(tmp_path.iterdir())


def test_extract_writes_the_member_under_its_base_name(tmp_path):
    wheel = _wheel(tmp_path / "mistral_common-9.9-py3-none-any.whl",
                   {TOKENIZER: b"sentencepiece model", "mistral_common/__init__.py": b""})
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "tokenizer.model.v1").write_bytes(b"old")
    assert wheelhouse.extract(wheel, TOKENIZER, dest) == dest / "tokenizer.model.v1"
    assert [p.name for p in dest.iterdir()] == ["tokenizer.model.v1"]  # replaced, no temporary file left
    assert (dest / "tokenizer.model.v1").read_bytes() == b"sentencepiece model"
    assert (dest / "tokenizer.model.v1").stat().st_mode & 0o777 == 0o644


def test_a_wheel_without_the_member_is_one_error_line(tmp_path, capsys, monkeypatch):
    wheel = _wheel(tmp_path / "mistral_common-9.9-py3-none-any.whl", {"mistral_common/__init__.py": b""})
    with pytest.raises(wheelhouse.Problem, match=r"mistral_common-9\.9-py3-none-any\.whl has no .*tokenizer"):
        wheelhouse.extract(wheel, TOKENIZER, tmp_path)
    assert not (tmp_path / "tokenizer.model.v1").exists()

    def pip_download(requirements, dest, python):
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    monkeypatch.setattr(wheelhouse, "pip_download", pip_download)
    _mistral_common_here(monkeypatch, None)
    monkeypatch.setattr(wheelhouse, "featstore_requirements", lambda: [Requirement("mistral-common")])
    assert wheelhouse.main(["--dest", str(tmp_path / "dest")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not any((tmp_path / "dest").iterdir())


def test_a_build_ships_the_wheels_and_the_tokenizer_file_not_mistral_commons_wheel(tmp_path, capsys, monkeypatch):
    dest = tmp_path / "whl"
    dest.mkdir()
    (dest / "mistral_common-1.13.1-py3-none-any.whl").write_bytes(b"left by an older build")
    fetched = []

    def pip_download(requirements, folder, python):
        """pip download as a stand-in: tiny wheels, mistral-common's holding the tokenizer."""
        fetched.append((folder, requirements))
        for requirement in map(Requirement, requirements):
            version = next(iter(requirement.specifier)).version if requirement.specifier else "9.9"
            wheel = folder / f"{requirement.name.replace('-', '_')}-{version}-py3-none-any.whl"
            _wheel(wheel, {TOKENIZER: b"x" * 1000} if requirement.name == "mistral-common" else {"m.py": b""})

    monkeypatch.setattr(wheelhouse, "pip_download", pip_download)
    _mistral_common_here(monkeypatch, None)
    assert wheelhouse.main(["--dest", str(dest)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    pins = _plan(HAVE)
    assert fetched[0] == (dest, [f"{name}=={version}" for name, version in pins.items()])
    assert fetched[1][0] != dest and fetched[1][1] == ["mistral-common"] and not fetched[1][0].exists()
    names = sorted(p.name for p in dest.iterdir())
    assert "tokenizer.model.v1" in names and not [n for n in names if n.startswith("mistral_common")]
    assert {canonicalize_name(n.split("-")[0]) for n in names if n.endswith(".whl")} == pins.keys()
    assert "mistral-common (tokenizer.model.v1 only; newest)" in out.splitlines()
    assert "tokenizer.model.v1 taken from mistral_common-9.9-py3-none-any.whl" in out.splitlines()
    assert "tokenizer.model.v1" in out and f"{len(pins)} wheels and 1 other files in {dest}" in out


def test_plan_through_the_script_downloads_nothing(tmp_path):
    done = _run("--plan", "--dest", str(tmp_path / "wheels"))
    assert done.returncode == 0, done.stderr
    assert f"duckdb=={importlib.metadata.version('duckdb')}" in done.stdout.splitlines()
    assert [line for line in done.stdout.splitlines() if line.startswith("mistral-common")] == [
        wheelhouse.plan_files(wheelhouse.featstore_requirements(), HAVE, TARGET)["mistral-common"].plan_line()]
    assert not (tmp_path / "wheels").exists()


def test_a_missing_package_list_is_one_error_line(tmp_path):
    done = _run("--plan", "--have", str(tmp_path / "absent.txt"))
    assert done.returncode == 2
    assert done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1, done.stderr
