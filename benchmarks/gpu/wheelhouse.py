"""Gather, as wheels in .whl/, the Python packages featstore's GPU run needs that the GPU image lacks.

    bash benchmarks/gpu/wheelhouse.sh                 # plan, download into .whl/, list the sizes
    bash benchmarks/gpu/wheelhouse.sh --plan          # the plan alone (offline)
    bash benchmarks/gpu/wheelhouse.sh --have FILE     # against a fresh package list of the image

The GPU machine has no network, so whatever it lacks travels with the working tree (64 MiB in all),
where benchmarks/gpu/paper.sh installs it with `pip install --no-index --no-deps`. The plan starts from
featstore's runtime requirements and its `paper` extra and walks their dependencies through the metadata
installed here, judged for the target's Python and platform; every package the image already holds
(benchmarks/gpu/target-packages.txt) is left out along with its own dependencies. Each wheel is pinned
to the version installed here, so the GPU runs the versions the tests ran.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, where featstore depends on tomli
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PYPROJECT = REPO / "pyproject.toml"
IMAGE_PYTHON = "3.12.3"  # the GPU image's interpreter
# The manylinux tags an x86_64 image with glibc 2.35 or newer accepts, in pip's order of preference.
PLATFORMS = ("manylinux_2_35_x86_64", "manylinux_2_34_x86_64", "manylinux_2_31_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
SKIP = {
    "polars": "nothing the GPU run executes imports polars (the CLI renders tables with DuckDB), "
              "and its runtime wheel is 54 MB",
}
NO_DEPS = {
    "mistral-common": "only its bundled tokenizer file is read (featstore.text.tokenizer finds it without "
                      "importing the package), so none of its dependencies is needed",
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class Problem(Exception):
    """A failure to report on one line; status 2 for bad input, 1 for a failed build."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def read_have(path: Path) -> set[str]:
    """The normalised names in a package list: `pip list --format=freeze` lines or bare names, # comments."""
    try:
        text = path.read_text()
    except OSError as err:
        raise Problem(f"cannot read the package list {path}: {err.strerror}", 2) from err
    names = (NAME.match(line.split("#", 1)[0].strip()) for line in text.splitlines())
    return {canonicalize_name(match.group()) for match in names if match}


def target_environment(python: str) -> dict[str, str]:
    """Marker variables of the GPU image, so the plan holds what it needs there, not on this machine."""
    full = python if python.count(".") == 2 else f"{python}.0"
    return {"python_version": ".".join(full.split(".")[:2]), "python_full_version": full,
            "implementation_version": full, "implementation_name": "cpython",
            "platform_python_implementation": "CPython", "os_name": "posix", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": "x86_64", "platform_release": "", "platform_version": ""}


def applies(requirement: Requirement, environment: dict[str, str], extras: frozenset[str]) -> bool:
    """Whether a requirement holds on the target; an `extra` marker holds only for an extra asked for."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras or {""})


def featstore_requirements() -> list[Requirement]:
    """featstore's runtime requirements plus its `paper` extra (the tokenizer of the paper preset)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(text) for text in project["dependencies"] + project["optional-dependencies"]["paper"]]


def installed_version(name: str) -> str:
    """The version installed here, which the wheel is pinned to; missing means the plan cannot be made."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError as err:
        raise Problem(f"{name} is not installed here, so its version and dependencies are unknown; "
                      f"run `pip install -e .[paper]` (or `pip install {name}`) first", 2) from err


def dependencies(name: str) -> list[Requirement]:
    """The requirements an installed distribution declares, markers and extras included."""
    return [Requirement(text) for text in importlib.metadata.requires(name) or []]


def plan(roots: list[Requirement], have: set[str], environment: dict[str, str]) -> dict[str, str]:
    """Name -> pinned version of every package the target needs and lacks, walked from the roots."""
    pins: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [req for req in roots if applies(req, environment, frozenset())]
    while todo:
        requirement = todo.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if name in have or name in SKIP or (name, extras) in seen:
            continue
        seen.add((name, extras))
        pins[name] = installed_version(name)
        if name not in NO_DEPS:
            todo += [dep for dep in dependencies(name) if applies(dep, environment, extras)]
    return dict(sorted(pins.items()))


def clear_stale(dest: Path, pins: dict[str, str]) -> None:
    """Remove wheels outside the plan: two versions of one package would stop the target's install."""
    for wheel in dest.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        pinned = pins.get(name)
        if pinned is None or Version(pinned) != version:
            wheel.unlink()


def download(pins: dict[str, str], dest: Path, python: str) -> None:
    """Fetch the pinned wheels built for the target (CPython, its version, manylinux x86_64), no deps."""
    short = "".join(python.split(".")[:2])
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "--abi", f"cp{short}", "-d", str(dest)]
    command += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    done = subprocess.run(command + [f"{name}=={version}" for name, version in pins.items()], check=False)
    if done.returncode:
        raise Problem(f"pip download failed (exit {done.returncode}); see pip's message above")


def report(dest: Path, max_mib: float) -> None:
    """Print each wheel with its size and the total; fail when the total would not travel."""
    wheels = sorted(dest.glob("*.whl"))
    for wheel in wheels:
        print(f"  {wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    total = sum(wheel.stat().st_size for wheel in wheels) / 2**20
    print(f"  {total:7.2f} MiB  total, {len(wheels)} wheels in {dest}")
    if total > max_mib:
        raise Problem(f"the wheels take {total:.1f} MiB, over the {max_mib:g} MiB limit; add the largest "
                      "to SKIP in benchmarks/gpu/wheelhouse.py if the run does not import it, or raise --max-mib")


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other error here."""

    def error(self, message: str) -> NoReturn:
        raise Problem(message, 2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; the defaults build .whl/ for the image as last read (target-packages.txt)."""
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=REPO / ".whl", help="where the wheels go (default: .whl/)")
    parser.add_argument("--have", type=Path, default=HERE / "target-packages.txt",
                        help="the image's package list (pip list --format=freeze output or bare names)")
    parser.add_argument("--python-version", default=IMAGE_PYTHON, help="the image's Python (default: %(default)s)")
    parser.add_argument("--plan", action="store_true", help="print the plan and download nothing (offline)")
    parser.add_argument("--max-mib", type=float, default=40.0, help="the wheels' size limit (default: 40)")
    return parser.parse_args(argv)


def run(argv: list[str] | None) -> None:
    """Plan, then (unless --plan) download and check the size; the plan is printed first either way."""
    args = parse_args(argv)
    pins = plan(featstore_requirements(), read_have(args.have), target_environment(args.python_version))
    for name, version in pins.items():
        print(f"{name}=={version}")
    if args.plan:
        return
    try:
        args.dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise Problem(f"cannot create {args.dest}: {err.strerror}", 2) from err
    clear_stale(args.dest, pins)
    download(pins, args.dest, args.python_version)
    report(args.dest, args.max_mib)


def main(argv: list[str] | None = None) -> int:
    """The exit status, with any failure as one `error:` line rather than a traceback."""
    try:
        run(argv)
    except Problem as problem:
        print(f"error: {problem}", file=sys.stderr)
        return problem.status
    return 0


if __name__ == "__main__":
    sys.exit(main())
