"""featstore.text.debian on small local packages: .deb files built here with dpkg-deb, nothing downloaded."""

from __future__ import annotations

import json
import lzma
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from featstore.errors import FeatstoreError
from featstore.text import debian
from featstore.text.sources import iter_documents

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian or Ubuntu)")

MIT_COPYRIGHT = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: MIT\n"
LUA = b"local M = {}\nfunction M.add(a, b)\n  return a + b\nend\nreturn M\n"


def r_strings(strings: list[str | None], version: int = 3) -> bytes:
    """An R XDR serialization of a character vector (None is NA), as R's serialize() writes it."""
    out = b"X\n" + struct.pack(">iii", version, 0x040201, 0x030500)
    if version == 3:
        out += struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", debian.STRSXP, len(strings))
    for s in strings:
        if s is None:
            out += struct.pack(">ii", debian.CHARSXP, -1)
        else:
            raw = s.encode()
            out += struct.pack(">ii", debian.CHARSXP | (1 << 3) << 12, len(raw)) + raw
    return out


def r_integers(values: list[int]) -> bytes:
    return b"X\n" + struct.pack(">iii", 2, 0x040201, 0x020300) + struct.pack(">ii", 13, len(values)) + b"".join(
        struct.pack(">i", v) for v in values)


def rdb(*objects: bytes, xz_last: bool = False) -> bytes:
    """A lazy-load database: each object a 4-byte length and a zlib stream (the last one xz-tagged if asked)."""
    parts = [struct.pack(">i", len(o)) + zlib.compress(o) for o in objects]
    if xz_last:
        last = objects[-1]
        parts[-1] = struct.pack(">i", len(last)) + b"X" + struct.pack(">i", len(last)) + lzma.compress(last)
    return b"".join(parts)


def make_deb(debs: Path, name: str, version: str, files: dict[str, bytes], copyright: str | None = MIT_COPYRIGHT) -> Path:
    root = debs / f"src-{name}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.org>\nDescription: test\n")
    if copyright is not None:
        files = {**files, f"usr/share/doc/{name}/copyright": copyright.encode()}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    deb = debs / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True, capture_output=True)
    shutil.rmtree(root)
    return deb


AUSTEN = ["TITLE", "", "It is a truth universally", "acknowledged, that a single man.", "", None, "Second  paragraph here."]


@pytest.fixture
def debs(tmp_path: Path) -> Path:
    folder = tmp_path / "debs"
    folder.mkdir()
    make_deb(folder, "lua-a", "1.0-1", {
        "usr/share/lua/5.1/a.lua": LUA,
        "usr/share/lua/5.4/a.lua": LUA,                     # the same file again: kept once
        "usr/share/nmap/scripts/scan.nse": b"description = [[scan]]\naction = function() end\n",
        "usr/share/lua/5.1/README": b"not lua",
        "usr/share/lua/5.1/empty.lua": b"\n",
    })
    make_deb(folder, "lua-b", "2.0", {"usr/lib/b/init.lua": b"return 42\n"}, copyright="no machine-readable licence\n")
    make_deb(folder, "prose", "0.1-1", {
        "usr/lib/R/site-library/prose/data/Rdata.rdb": rdb(r_strings(AUSTEN), r_integers([1, 2]),
                                                           r_strings(["Another book.", "Its second line."], version=2),
                                                           xz_last=True),
        "usr/lib/R/site-library/prose/R/prose.rdb": rdb(r_strings(["code names, not prose"])),
        "usr/share/prose/notes.txt": b"A plain text\nfile.\n\nTwo paragraphs.\n",
        "usr/share/doc/prose/README.txt": b"documentation is skipped",
    })
    return folder


def build(tmp_path: Path, debs: Path, **kw) -> dict:
    return debian.build_real_corpora(tmp_path / "out", debs=debs, lua_packages=("lua-a", "lua-b"),
                                     english_packages=("prose",), download=no_download, **kw)


def no_download(names: list[str], folder: Path) -> None:
    raise AssertionError(f"asked to download {names}")


def test_builds_three_corpora_with_licences(tmp_path: Path, debs: Path) -> None:
    manifest = build(tmp_path, debs)
    out = tmp_path / "out"
    assert json.loads((out / "manifest.json").read_text()) == manifest

    lua_files = sorted(str(p.relative_to(out / "lua")) for p in (out / "lua").rglob("*") if p.is_file())
    assert lua_files == ["lua-a/usr/share/lua/5.1/a.lua", "lua-a/usr/share/nmap/scripts/scan.nse", "lua-b/usr/lib/b/init.lua"]
    assert manifest["lua"]["documents"] == 3 and next(iter_documents(str(out / "lua")))[1] == LUA.decode()
    lua_a, lua_b = manifest["lua"]["packages"]
    assert (lua_a["name"], lua_a["version"], lua_a["licenses"]) == ("lua-a", "1.0-1", ["MIT"])
    assert (out / lua_a["copyright"]).read_text() == MIT_COPYRIGHT
    assert lua_b["licenses"] == [] and (out / lua_b["copyright"]).read_text().startswith("no machine-readable")

    docs = [text for _, text in iter_documents(str(out / "english.jsonl"))]
    assert docs == [
        "TITLE\n\nIt is a truth universally acknowledged, that a single man.\n\nSecond paragraph here.",
        "Another book. Its second line.",
        "A plain text file.\n\nTwo paragraphs.",
    ]
    assert manifest["english"]["packages"][0]["licenses"] == ["MIT"]

    root, paths = debian.stdlib_paths()
    assert manifest["python"]["documents"] == len(paths)
    assert (out / "python" / paths[0].relative_to(root)).read_bytes() == paths[0].read_bytes()
    assert manifest["python"]["packages"][0]["licenses"] == ["PSF-2.0"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary folder left behind


def test_an_existing_output_is_kept_unless_replaced(tmp_path: Path, debs: Path) -> None:
    build(tmp_path, debs)
    marker = tmp_path / "out/lua/marker.lua"
    marker.write_text("x = 1\n")
    with pytest.raises(FeatstoreError, match="already exists; pass --replace"):
        build(tmp_path, debs)
    assert marker.exists()
    build(tmp_path, debs, replace=True)
    assert not marker.exists()


def test_missing_packages_are_downloaded_into_the_debs_folder(tmp_path: Path, debs: Path) -> None:
    asked = []

    def download(names: list[str], folder: Path) -> None:
        asked.append(names)
        make_deb(folder, "lua-c", "3", {"c.lua": b"return 3\n"})

    manifest = debian.build_real_corpora(tmp_path / "out", debs=debs, lua_packages=("lua-a", "lua-c"),
                                         english_packages=("prose",), download=download)
    assert asked == [["lua-c"]]
    assert [p["name"] for p in manifest["lua"]["packages"]] == ["lua-a", "lua-c"]


@pytest.mark.parametrize(("lua", "english", "message"), [
    (("nope",), ("prose",), "no .deb of package nope"),
    (("prose",), ("prose",), "no Lua files in packages prose"),
    (("lua-a",), ("lua-b",), "no English text in packages lua-b"),
])
def test_bad_packages_are_refused_and_nothing_is_written(tmp_path: Path, debs: Path, lua, english, message) -> None:
    with pytest.raises(FeatstoreError, match=message):
        debian.build_real_corpora(tmp_path / "out", debs=debs, lua_packages=lua, english_packages=english,
                                  download=lambda names, folder: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["debs"]


def test_a_broken_r_database_is_refused() -> None:
    with pytest.raises(FeatstoreError, match="not an R lazy-load database"):
        list(debian.r_lazyload_strings(struct.pack(">i", 10) + b"\x78garbage-not-zlib"))
    with pytest.raises(FeatstoreError, match="not an R XDR serialization"):
        list(debian.r_lazyload_strings(rdb(b"A\nascii format")))


def test_paragraphs_are_packed_whole_up_to_the_limit() -> None:
    paras = debian.paragraphs("one\ntwo\n\n\n  three  \n \nfour " + "x" * 30)
    assert paras == ["one two", "three", "four " + "x" * 30]
    assert list(debian.pack_paragraphs(paras, limit=20)) == ["one two\n\nthree", "four " + "x" * 30]
