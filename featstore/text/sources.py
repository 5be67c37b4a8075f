"""Where document text comes from: files, folders, globs, the Python standard library, generators, hubs.

Every source yields (origin, text) pairs in a fixed order, so tokenizing the same source twice gives
the same corpus. Origins say where a document came from (file path, line or row number) for display.

Source forms, tried in this order:
- `python-stdlib`: every .py file of the running interpreter's standard library (site-packages excluded);
- `generated:<kind>[?docs=N&seed=S]`: a seeded generator of `featstore.text.generators` (lua, stories, childes);
- `hf:<id or local dataset folder>[:config]`: always `datasets.load_dataset`;
- an existing `.txt` file (documents separated by blank lines), `.jsonl` (field `text_key`),
  `.parquet` (column `text_key`), or directory (every non-hidden text file under it, one document each);
- a glob pattern such as `src/**/*.lua` (each matching file one document);
- otherwise a hub dataset id `owner/name[:config]`, loaded with `datasets.load_dataset`.
"""

from __future__ import annotations

import glob
import json
import re
import sysconfig
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from featstore.errors import FeatstoreError

STDLIB = "python-stdlib"
GENERATED_PREFIX = "generated:"
HUB_PREFIX = "hf:"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+(:[\w.\-]+)?$")
FILE_SUFFIXES = {".txt", ".jsonl", ".parquet"}
DEFAULT_GENERATED_DOCS = 200
PARQUET_BATCH_ROWS = 4096
NON_TEXT = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}


def iter_documents(
    source: str,
    *,
    hub_split: str = "train",
    text_key: str = "text",
    max_docs: int | None = None,
) -> Iterator[tuple[str, str]]:
    """(origin, text) for every non-empty document of `source`, in a deterministic order."""
    docs = (pair for pair in _documents(source, hub_split, text_key) if pair[1].strip())
    return islice(docs, max_docs) if max_docs is not None else docs


def _documents(source: str, hub_split: str, text_key: str) -> Iterator[tuple[str, str]]:
    if source == STDLIB:
        return _stdlib_files()
    if source.startswith(GENERATED_PREFIX):
        return _generated(source[len(GENERATED_PREFIX):])
    if source.startswith(HUB_PREFIX):
        return _hub_dataset(source[len(HUB_PREFIX):], hub_split, text_key)
    path = Path(source).expanduser()
    if path.is_dir():
        return _files(sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path))))
    if path.is_file():
        return _file(path, text_key)
    if glob.has_magic(source):
        matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not matches:
            raise FeatstoreError(f"no files match {source!r}; check the pattern (use ** for subfolders)")
        return _files(matches)
    if HUB_ID.match(source) and path.suffix.lower() not in FILE_SUFFIXES:
        return _hub_dataset(source, hub_split, text_key)
    raise FeatstoreError(
        f"source {source!r} is not an existing file, folder, glob, `python-stdlib`, `generated:<kind>` or hub id owner/name"
    )


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _file(path: Path, text_key: str) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl(path, text_key)
    if suffix == ".parquet":
        return _parquet(path, text_key)
    if suffix == ".txt":
        return _blank_line_separated(path)
    return _files([path], strict=True)


def _read_text(path: Path, strict: bool = False) -> str | None:
    """The file's text, or None for binary files (a NUL byte). Text that is not UTF-8 is refused
    in a file named on its own (`strict`); in a folder or glob its undecodable bytes become U+FFFD."""
    data = path.read_bytes()
    if b"\0" in data:
        if strict:
            raise FeatstoreError(f"{path} holds NUL bytes: it is binary, not text; give a UTF-8 text file")
        return None
    return _decode(path, data) if strict else data.decode("utf-8", errors="replace")


def _decode(path: Path, data: bytes, where: str = "") -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeatstoreError(
            f"{path}{where} is not valid UTF-8 (byte {exc.start}: {exc.reason}); featstore reads text as UTF-8: "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


def _files(paths: list[Path], strict: bool = False) -> Iterator[tuple[str, str]]:
    for path in paths:
        text = _read_text(path, strict)
        if text is not None:
            yield str(path), text


def _blank_line_separated(path: Path) -> Iterator[tuple[str, str]]:
    """Documents of a .txt file: runs of lines separated by one or more blank lines."""
    lines: list[str] = []
    n_doc = 0
    if b"\0" in path.read_bytes():
        raise FeatstoreError(f"{path} holds NUL bytes: it is binary, not text; give a UTF-8 text file")
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = _decode(path, raw, f" line {line_no}")
            if line.strip():
                lines.append(line)
                continue
            if lines:
                yield f"{path}#{n_doc}", "".join(lines).rstrip("\n")
                n_doc += 1
                lines = []
    if lines:
        yield f"{path}#{n_doc}", "".join(lines).rstrip("\n")


def _jsonl(path: Path, text_key: str) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            line = _decode(path, raw, f" line {line_no}")
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FeatstoreError(f"{path}:{line_no} is not valid JSON ({exc.msg}); fix the line or remove it") from exc
            if not isinstance(record, dict) or text_key not in record:
                raise FeatstoreError(f"{path}:{line_no} has no field {text_key!r}; name the text field with --text-key")
            yield f"{path}:{line_no}", _text(record[text_key], f"{path}:{line_no}", text_key)


def _parquet(path: Path, text_key: str) -> Iterator[tuple[str, str]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        if text_key not in parquet.schema_arrow.names:
            raise FeatstoreError(
                f"{path} has no column {text_key!r} (columns: {', '.join(parquet.schema_arrow.names)}); "
                "name the text column with --text-key"
            )
        row = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=[text_key]):
            for value in batch.column(0).to_pylist():
                yield f"{path}#{row}", _text(value, f"{path} row {row}", text_key)
                row += 1
    except (pa.ArrowException, OSError) as exc:  # not Parquet, truncated, a damaged page
        raise FeatstoreError(f"{path} is not a readable Parquet file ({str(exc).splitlines()[0]}); give a valid one") from exc


def stdlib_paths() -> tuple[Path, list[Path]]:
    """(root, .py files) of the interpreter's own standard library: about 12 MB of real Python that every install has."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    return root, sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))


def _stdlib_files() -> Iterator[tuple[str, str]]:
    return _files(stdlib_paths()[1])


def parse_generated(spec: str) -> tuple[str, int, int]:
    """`kind?docs=N&seed=S` → (kind, N, S), checked without generating anything (an experiment's plan too)."""
    from featstore.text.generators import check_request

    parts = urlsplit(spec)
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"docs", "seed"}
    if unknown:
        raise FeatstoreError(f"unknown option(s) {', '.join(sorted(unknown))} in generated:{spec}; use docs=N&seed=S")
    try:
        n_docs = int(query.get("docs", [DEFAULT_GENERATED_DOCS])[0])
        seed = int(query.get("seed", [0])[0])
    except ValueError as exc:
        raise FeatstoreError(f"generated:{spec}: docs and seed must be integers") from exc
    check_request(parts.path, n_docs)
    return parts.path, n_docs, seed


def _generated(spec: str) -> Iterator[tuple[str, str]]:
    """`kind?docs=N&seed=S` → documents from the project's seeded generators."""
    from featstore.text.generators import generate_documents

    kind, n_docs, seed = parse_generated(spec)
    for i, text in enumerate(generate_documents(kind, n_docs, seed)):
        yield f"generated:{kind}?seed={seed}#{i}", text


def _hub_dataset(dataset_id: str, split: str, text_key: str) -> Iterator[tuple[str, str]]:
    """A dataset `load_dataset` understands (hub id or local dataset folder), streamed row by row."""
    import datasets

    name, _, config = dataset_id.partition(":")
    try:
        rows = datasets.load_dataset(name, config or None, split=split, streaming=True)
        columns = rows.column_names
    except Exception as exc:  # datasets raises many types (connection, not found, config); all mean the same here
        raise FeatstoreError(
            f"cannot load dataset {dataset_id!r} split {split!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    if columns is not None and text_key not in columns:
        raise FeatstoreError(
            f"dataset {dataset_id!r} has no column {text_key!r} (columns: {', '.join(columns)}); use --text-key"
        )
    for i, row in enumerate(rows):
        yield f"{dataset_id}[{split}]#{i}", _text(row.get(text_key), f"dataset {dataset_id!r} [{split}] row {i}", text_key)


def _text(value: object, where: str, text_key: str) -> str:
    """A record's text: a string, never a number, boolean, null, list or object read as one (a text key
    naming the wrong field would otherwise make documents of "3" or "True")."""
    if isinstance(value, str):
        return value
    kind = NON_TEXT.get(type(value), type(value).__name__)
    raise FeatstoreError(f"{where}: {text_key!r} holds {kind}, not text; make it a string or name the text field with --text-key")
