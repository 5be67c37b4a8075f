"""Real corpora without a hub: Lua and English from Debian packages, Python from the standard library.

A Debian or Ubuntu machine that can install packages can download them: `apt-get download` fetches a
package's .deb without installing it (no root needed) and `dpkg-deb -x` unpacks it. From those:

- lua: every Lua source (`*.lua`, nmap's `*.nse` scripts) of the Lua packages, one document per file,
  identical files kept once;
- english: the prose of the English packages: character vectors of R data sets (an R package's
  lazy-load database, `*.rdb`: Jane Austen's six novels in r-cran-janeaustenr, Moby-Dick in
  r-cran-tokenizers) and `*.txt`
  files, paragraphs unwrapped and packed into documents of about DOC_CHARS characters (a .jsonl);
- python: the running interpreter's standard library (`python-stdlib`), copied so the corpus stays fixed.

Beside each corpus the output holds every package's Debian copyright file (its licences) and a
manifest.json with versions, licences, file and document counts. The folder is written whole or not
at all: it is built in a temporary sibling and renamed into place.
"""

from __future__ import annotations

import bz2
import hashlib
import json
import lzma
import platform
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from featstore.errors import FeatstoreError
from featstore.text.sources import stdlib_paths

DEFAULT_OUT = Path("~/.local/share/featstore/real-corpora")
LUA_PACKAGES = ("lua-penlight", "luarocks", "prosody", "lmod", "nmap-common", "neovim-runtime")
ENGLISH_PACKAGES = ("r-cran-janeaustenr", "r-cran-tokenizers")
LUA_SUFFIXES = {".lua", ".nse"}
DOC_CHARS = 8_000
CORPUS_FILES = {"python": "python", "lua": "lua", "english": "english.jsonl"}

Download = Callable[[list[str], Path], None]


@dataclass(frozen=True)
class Package:
    """One unpacked .deb: its name, version and root folder."""

    name: str
    version: str
    root: Path

    @property
    def copyright(self) -> Path:
        return self.root / "usr/share/doc" / self.name / "copyright"


def build_real_corpora(
    out: Path,
    *,
    debs: Path | None = None,
    lua_packages: tuple[str, ...] = LUA_PACKAGES,
    english_packages: tuple[str, ...] = ENGLISH_PACKAGES,
    download: Download | None = None,
    replace: bool = False,
) -> dict:
    """Write out/python, out/lua, out/english.jsonl, out/licenses and out/manifest.json; return the manifest.

    Packages come from `debs` (a folder of .deb files; missing ones are downloaded into it) or are
    downloaded into a temporary folder. `download(names, folder)` defaults to `apt-get download`.
    """
    out = Path(out).expanduser()
    if out.exists() and not replace:
        raise FeatstoreError(f"{out} already exists; pass --replace to rebuild it, or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        work = Path(tmp)
        deb_dir = Path(debs).expanduser() if debs is not None else work / "debs"
        deb_dir.mkdir(parents=True, exist_ok=True)
        names = list(dict.fromkeys(lua_packages + english_packages))
        packages = unpack_packages(names, deb_dir, work / "roots", download or apt_download)
        staged = work / "corpora"
        manifest = {
            "lua": write_lua(staged, [packages[n] for n in lua_packages]),
            "english": write_english(staged, [packages[n] for n in english_packages]),
            "python": write_python(staged),
        }
        (staged / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():  # moved aside, not deleted, until the new folder is in place
            out.rename(work / "previous")
        staged.rename(out)
    return manifest


# -- packages ----------------------------------------------------------------------------------------


def apt_download(names: list[str], folder: Path) -> None:
    """`apt-get download NAMES` into `folder`: the .deb files of the packages, nothing installed."""
    run_tool(["apt-get", "download", *names], cwd=folder)


def run_tool(command: list[str], cwd: Path | None = None) -> str:
    if shutil.which(command[0]) is None:
        raise FeatstoreError(
            f"{command[0]} not found: building the real corpora needs Debian or Ubuntu (apt-get, dpkg-deb); "
            "elsewhere point the experiment's corpora at your own folders with --set"
        )
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise FeatstoreError(f"{' '.join(command[:3])} failed: {detail}")
    return done.stdout


def unpack_packages(names: list[str], deb_dir: Path, roots: Path, download: Download) -> dict[str, Package]:
    """Each package's .deb (downloaded when `deb_dir` lacks it), unpacked under `roots`."""
    missing = [n for n in names if _deb_of(deb_dir, n) is None]
    if missing:
        download(missing, deb_dir)
    packages = {}
    for name in names:
        deb = _deb_of(deb_dir, name)
        if deb is None:
            raise FeatstoreError(f"no .deb of package {name} in {deb_dir}; check the name with apt-cache show {name}")
        root = roots / name
        root.mkdir(parents=True)
        run_tool(["dpkg-deb", "-x", str(deb), str(root)])
        version = run_tool(["dpkg-deb", "-f", str(deb), "Version"]).strip()
        packages[name] = Package(name, version, root)
    return packages


def _deb_of(folder: Path, name: str) -> Path | None:
    matches = sorted(folder.glob(f"{name}_*.deb"))
    return matches[-1] if matches else None


def licenses_of(copyright_file: Path) -> list[str]:
    """The licence names a Debian copyright file declares (`License:` lines of the machine-readable format)."""
    if not copyright_file.is_file():
        return []
    found = re.findall(r"^License:[ \t]*(\S[^\n]*)$", copyright_file.read_text(errors="replace"), flags=re.MULTILINE)
    return sorted({name.strip() for name in found})


def record_packages(staged: Path, packages: list[Package]) -> list[dict]:
    """Copy each package's copyright file to staged/licenses/ and describe the package for the manifest."""
    licenses = staged / "licenses"
    licenses.mkdir(parents=True, exist_ok=True)
    rows = []
    for package in packages:
        row = {"name": package.name, "version": package.version, "licenses": licenses_of(package.copyright)}
        if package.copyright.is_file():
            shutil.copyfile(package.copyright, licenses / f"{package.name}.copyright")
            row["copyright"] = f"licenses/{package.name}.copyright"
        rows.append(row)
    return rows


# -- lua ---------------------------------------------------------------------------------------------


def write_lua(staged: Path, packages: list[Package]) -> dict:
    """staged/lua/<package>/<path>: every Lua source of the packages, byte-identical files kept once."""
    seen: set[str] = set()
    n_files = n_bytes = 0
    for package in packages:
        for path in sorted(package.root.rglob("*")):
            if path.suffix not in LUA_SUFFIXES or path.is_symlink() or not path.is_file():
                continue
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen or not data.strip():
                continue
            seen.add(digest)
            target = staged / "lua" / package.name / path.relative_to(package.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            n_files, n_bytes = n_files + 1, n_bytes + len(data)
    if n_files == 0:
        raise FeatstoreError(f"no Lua files in packages {', '.join(p.name for p in packages)}; name packages that ship .lua files")
    return {"path": "lua", "documents": n_files, "bytes": n_bytes, "packages": record_packages(staged, packages)}


# -- english -----------------------------------------------------------------------------------------


def write_english(staged: Path, packages: list[Package]) -> dict:
    """staged/english.jsonl: the packages' prose as documents of whole paragraphs, about DOC_CHARS each."""
    n_docs = n_bytes = 0
    staged.mkdir(parents=True, exist_ok=True)
    with open(staged / "english.jsonl", "w", encoding="utf-8") as fh:
        for package in packages:
            for origin, text in package_texts(package):
                for k, doc in enumerate(pack_paragraphs(paragraphs(text))):
                    fh.write(json.dumps({"text": doc, "origin": f"{origin}#{k}"}, ensure_ascii=False) + "\n")
                    n_docs, n_bytes = n_docs + 1, n_bytes + len(doc.encode())
    if n_docs == 0:
        raise FeatstoreError(
            f"no English text in packages {', '.join(p.name for p in packages)}; "
            "name packages with R data sets of text (.rdb) or .txt files"
        )
    return {"path": "english.jsonl", "documents": n_docs, "bytes": n_bytes, "packages": record_packages(staged, packages)}


def package_texts(package: Package) -> Iterator[tuple[str, str]]:
    """(origin, text) of every character vector of the R data sets (data/*.rdb) and every .txt file a
    package ships outside usr/share/doc."""
    doc_dir = package.root / "usr/share/doc"
    for path in sorted(package.root.rglob("*")):
        if not path.is_file() or path.is_symlink() or doc_dir in path.parents:
            continue
        origin = f"{package.name}/{path.relative_to(package.root)}"
        if path.suffix == ".rdb" and path.parent.name == "data":  # R data sets; R/ and help/ hold code and docs
            for k, lines in enumerate(r_lazyload_strings(path.read_bytes())):
                yield f"{origin}:{k}", "\n".join(lines)
        elif path.suffix == ".txt":
            yield origin, path.read_text(encoding="utf-8", errors="replace")


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each hard-wrapped paragraph unwrapped into one line."""
    blocks = re.split(r"\n\s*\n", text.replace("\ufeff", ""))
    return [" ".join(block.split()) for block in blocks if block.strip()]


def pack_paragraphs(paras: list[str], limit: int = DOC_CHARS) -> Iterator[str]:
    """Consecutive paragraphs joined by blank lines into documents of at most `limit` characters (a longer
    paragraph is a document of its own)."""
    doc: list[str] = []
    size = 0
    for para in paras:
        if doc and size + len(para) + 2 > limit:
            yield "\n\n".join(doc)
            doc, size = [], 0
        doc.append(para)
        size += len(para) + 2
    if doc:
        yield "\n\n".join(doc)


# -- R lazy-load databases ---------------------------------------------------------------------------

STRSXP, CHARSXP = 16, 9
NA_LENGTH = -1
LATIN1_FLAG = 1 << 2


def r_lazyload_strings(rdb: bytes) -> Iterator[list[str]]:
    """The character vectors of an R lazy-load database (.rdb): a run of compressed R serializations,
    each a 4-byte big-endian length and a zlib stream (or, tagged with one byte, bzip2, xz or none).
    Objects other than character vectors are skipped."""
    offset = 0
    while offset + 4 < len(rdb):
        payload, used = _r_decompress(rdb[offset + 4:])
        offset += 4 + used
        strings = r_unserialize_strings(payload)
        if strings is not None:
            yield strings


def _r_decompress(blob: bytes) -> tuple[bytes, int]:
    """(bytes, bytes consumed) of one compressed object."""
    tag = blob[:1]
    if tag in (b"2", b"X", b"Z", b"0"):
        size = struct.unpack(">i", blob[1:5])[0] if tag != b"Z" else None
        inner = blob[5:] if tag != b"Z" else blob[1:]
        if tag == b"0":
            return inner[:size], 5 + size
        engine = {b"2": bz2.BZ2Decompressor, b"X": lzma.LZMADecompressor, b"Z": zlib.decompressobj}[tag]()
        data = engine.decompress(inner)
        return data, len(blob) - len(engine.unused_data)
    engine = zlib.decompressobj()
    try:
        data = engine.decompress(blob)
    except zlib.error as exc:
        raise FeatstoreError(f"not an R lazy-load database (a compressed object failed: {exc}); give an .rdb file") from None
    return data, len(blob) - len(engine.unused_data)


def r_unserialize_strings(data: bytes) -> list[str] | None:
    """The strings of an R XDR serialization whose object is a character vector (NA becomes ""), else None."""
    if data[:2] != b"X\n":
        raise FeatstoreError("not an R XDR serialization (it should start with 'X\\n'); give an .rdb file R wrote")
    version = struct.unpack(">i", data[2:6])[0]
    pos = 14
    if version == 3:
        pos += 4 + struct.unpack(">i", data[pos:pos + 4])[0]  # the native encoding's name
    flags, length = struct.unpack(">ii", data[pos:pos + 8])
    if flags & 0xFF != STRSXP:
        return None
    pos += 8
    if length == NA_LENGTH:  # a long vector: the length follows as two 32-bit halves
        upper, lower = struct.unpack(">II", data[pos:pos + 8])
        length, pos = (upper << 32) + lower, pos + 8
    strings = []
    for _ in range(length):
        flags, size = struct.unpack(">ii", data[pos:pos + 8])
        pos += 8
        if size == NA_LENGTH:
            strings.append("")
            continue
        raw = data[pos:pos + size]
        pos += size
        strings.append(raw.decode("latin-1" if flags >> 12 & LATIN1_FLAG else "utf-8", errors="replace"))
    return strings


# -- python ------------------------------------------------------------------------------------------


def write_python(staged: Path) -> dict:
    """staged/python/: the running interpreter's standard library, with its licence."""
    root, paths = stdlib_paths()
    n_bytes = 0
    for path in paths:
        target = staged / "python" / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        n_bytes += target.stat().st_size
    licence = root / "LICENSE.txt"
    row = {"name": f"{root.name}-stdlib", "version": platform.python_version(), "licenses": ["PSF-2.0"]}
    if licence.is_file():
        (staged / "licenses").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(licence, staged / "licenses/python-stdlib.LICENSE.txt")
        row["copyright"] = "licenses/python-stdlib.LICENSE.txt"
    return {"path": "python", "documents": len(paths), "bytes": n_bytes, "packages": [row]}
