"""Training and validation text for a corpus spec: one source or a weighted mixture of sources.

A spec is what `featstore.text.sources.iter_documents` accepts (`python-stdlib`, `generated:lua?docs=2000`,
a file, a folder, a glob, a hub id), or several joined by `+`, each with an optional `=weight`:
`python-stdlib=0.5+generated:childes?docs=20000=0.5` is BabyPython's half-Python, half-English mix.
The spec string is stored as a model's `train_corpus`, so anyone can later read "the data that model
saw" again, split exactly the same way.

- Split: a document is in validation when a hash of (seed, its text) falls below the validation
  fraction: deterministic, independent of order, and identical texts always land on the same side.
- Order: each source passes through a seeded shuffle buffer, so the first N tokens of a long sorted
  source (the standard library, alphabetically) are a spread of it rather than its first files.
- Mixture: weights are shares of characters; documents are interleaved so each source's share stays
  at its weight, and the mixture ends when any source runs out (the proportions are the point).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from featstore.errors import FeatstoreError

VALIDATION_FRACTION = 0.1
SHUFFLE_BUFFER = 4096
PARTS = ("train", "validation")
# `name=0.5` is a weight, but `generated:lua?docs=200` is a query option: a key after ? or & is not a source.
WEIGHTED = re.compile(r"^(?P<source>.+?)=(?P<weight>\d+(\.\d*)?|\.\d+)$")
QUERY_KEY = re.compile(r"[?&][A-Za-z_]+$")


@dataclass(frozen=True)
class Component:
    source: str
    weight: float


def parse_spec(spec: str) -> list[Component]:
    """`a=0.5+b=0.5` → components with weights normalised to sum to 1 (a missing weight counts 1)."""
    if not spec or not spec.strip():
        raise FeatstoreError("empty corpus spec; give a source such as `python-stdlib` or `generated:lua`")
    components = []
    for item in spec.split("+"):
        item = item.strip()
        match = WEIGHTED.match(item)
        if match and not QUERY_KEY.search(match["source"]):
            source, weight = match["source"], float(match["weight"])
        else:
            source, weight = item, 1.0
        if not source:
            raise FeatstoreError(f"corpus spec {spec!r} has an empty part; join sources with '+', e.g. a=0.5+b=0.5")
        if weight <= 0:
            raise FeatstoreError(f"corpus spec {spec!r}: weight of {source!r} must be > 0")
        components.append(Component(source, weight))
    total = sum(c.weight for c in components)
    return [Component(c.source, c.weight / total) for c in components]


def in_validation(text: str, seed: int = 0, fraction: float = VALIDATION_FRACTION) -> bool:
    """Whether a document belongs to the validation part: a stable hash of the seed and its text."""
    digest = hashlib.blake2b(f"{seed}\0{text}".encode("utf-8", "replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def iter_split_documents(
    spec: str,
    *,
    part: str = "train",
    seed: int = 0,
    max_docs: int | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> Iterator[tuple[str, str]]:
    """(origin, text) of one part of `spec`; FeatstoreError when that part has no documents."""
    if part not in PARTS:
        raise FeatstoreError(f"unknown corpus part {part!r}; use 'train' or 'validation'")
    components = parse_spec(spec)
    want_validation = part == "validation"
    streams = [
        (
            pair
            for pair in _shuffled(_source_documents(c.source), shuffle_buffer, f"{seed}:{c.source}")
            if in_validation(pair[1], seed, validation_fraction) == want_validation
        )
        for c in components
    ]
    docs = streams[0] if len(streams) == 1 else _interleave(streams, [c.weight for c in components])
    n = 0
    for pair in docs:
        if max_docs is not None and n >= max_docs:
            return
        yield pair
        n += 1
    if n == 0:
        raise FeatstoreError(
            f"corpus {spec!r} has no {part} documents; point it at more text (e.g. a larger docs=N)"
        )


def iter_texts(
    spec: str,
    *,
    part: str = "train",
    seed: int = 0,
    max_docs: int | None = None,
    validation_fraction: float = VALIDATION_FRACTION,
) -> Iterator[str]:
    """Document texts of the train or validation part of `spec` (see the module docstring)."""
    for _, text in iter_split_documents(
        spec, part=part, seed=seed, max_docs=max_docs, validation_fraction=validation_fraction
    ):
        yield text


def _source_documents(source: str) -> Iterator[tuple[str, str]]:
    from featstore.text.sources import iter_documents

    return iter_documents(source)


def _shuffled(items: Iterator, buffer_size: int, seed: str) -> Iterator:
    """A seeded shuffle buffer: streams, and fully shuffles any source shorter than the buffer."""
    rng = random.Random(seed)
    buffer = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


def _interleave(streams: list[Iterator[tuple[str, str]]], weights: list[float]) -> Iterator[tuple[str, str]]:
    """Next document always from the source furthest below its share of characters; stop when one runs out."""
    chars = [0] * len(streams)
    while True:
        i = min(range(len(streams)), key=lambda j: chars[j] / weights[j])
        pair = next(streams[i], None)
        if pair is None:
            return
        chars[i] += len(pair[1])
        yield pair


def mix_specs(parts: list[tuple[str, float]]) -> str:
    """One spec mixing whole specs by weight: ("a=0.5+b=0.5", 0.5), ("c", 0.5) → a=0.25+b=0.25+c=0.5."""
    return "+".join(
        f"{c.source}={c.weight * weight / sum(w for _, w in parts):g}" for spec, weight in parts for c in parse_spec(spec)
    )
