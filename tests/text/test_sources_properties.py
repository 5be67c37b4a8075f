"""Property tests of the corpus loaders: `featstore corpus add` on random malformed JSONL, Parquet and text
files (and out-of-range options) fails in one `error:` line, never a traceback, and writes nothing."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import property_settings, refusal_line, run_cli, tiny_texts, tree_hashes
from hypothesis import example, given
from hypothesis import strategies as st

from featstore.text.slices import add_corpus
from featstore.warehouse import Warehouse

TEXTS = st.text(min_size=1, max_size=40)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                           max_leaves=5)
NOT_TEXT = JSON_VALUES.filter(lambda v: not isinstance(v, str))


def line(record) -> bytes:
    return json.dumps(record).encode()


GOOD_LINES = TEXTS.map(lambda text: line({"text": text}))
BAD_LINES = st.one_of(
    NOT_TEXT.map(lambda v: line({"text": v})),  # {"text": 3}
    st.dictionaries(st.text(max_size=5).filter(lambda k: k != "text"), JSON_VALUES, max_size=3).map(line),  # no key
    NOT_TEXT.filter(lambda v: not isinstance(v, dict)).map(line),  # not an object
    st.text(max_size=20).map(lambda t: ("{" + t + "\x01").encode()),  # not JSON (a raw control character)
    st.binary(max_size=20).map(lambda b: b"\xff" + b),  # not UTF-8
)


@st.composite
def jsonl_files(draw) -> tuple[str, bytes]:
    """Good lines with at least one bad one among them."""
    lines = draw(st.lists(GOOD_LINES, max_size=5))
    for _ in range(draw(st.integers(1, 2))):
        lines.insert(draw(st.integers(0, len(lines))), draw(BAD_LINES))
    return "docs.jsonl", b"\n".join(lines) + b"\n"


ARROW_NOT_TEXT = st.sampled_from([pa.int64(), pa.float64(), pa.bool_(), pa.null(), pa.list_(pa.string()),
                                  pa.struct([("a", pa.string())]), pa.binary()])


@st.composite
def parquet_files(draw) -> tuple[str, bytes]:
    """A text column of another type, strings with a null, no text column, or no Parquet at all."""
    kind = draw(st.sampled_from(["type", "null", "column", "garbage"]))
    if kind == "garbage":
        return "docs.parquet", draw(st.binary(max_size=100))
    texts = draw(st.lists(TEXTS, min_size=1, max_size=4))
    if kind == "type":
        column = pa.array([None] * len(texts), draw(ARROW_NOT_TEXT))
    else:
        column = pa.array([*texts, None], pa.string())
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text" if kind != "column" else "body": column}), sink)
    return "docs.parquet", sink.getvalue().to_pybytes()


@st.composite
def text_files(draw) -> tuple[str, bytes]:
    """A .txt holding a NUL byte or bytes that are not UTF-8, or nothing but blanks."""
    good = draw(TEXTS).encode("utf-8", "surrogatepass")
    bad = draw(st.sampled_from([b"\x00", b"\xff\xfe", b"\xc3"]))
    return "docs.txt", draw(st.sampled_from([good + bad + good, bad, b" \n\n\t "]))


# `generated:` specs with an unknown kind or option, or docs out of range or no integer (given as --source itself)
GENERATED = st.builds("generated:{}?{}={}".format, st.sampled_from(["lua", "stories", "nope", ""]),
                      st.sampled_from(["docs", "doc", "x"]),
                      st.integers(-5, 0) | st.integers(10**6 + 1, 10**30) | st.text("abc.-", max_size=4))

BAD_OPTIONS = st.one_of(
    st.sampled_from(["--max-tokens", "--max-docs", "--doc-tokens", "--min-docs"]).flatmap(
        lambda option: st.integers(-2**40, 0).map(lambda n: [option, str(n)])),
    st.integers(2**32 + 1, 2**62).map(lambda n: ["--max-tokens", str(n)]),
    st.integers(10, 1000).map(lambda n: ["--min-docs", str(n)]),  # more documents than the file has
)
MALFORMED = st.one_of(
    st.tuples(jsonl_files() | parquet_files() | text_files() | GENERATED.map(lambda spec: ("spec", spec)),
              st.just([]) | BAD_OPTIONS),
    st.tuples(st.lists(GOOD_LINES, min_size=1, max_size=5).map(lambda lines: ("docs.jsonl", b"\n".join(lines))), BAD_OPTIONS),
)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory, tiny_tokenizer_dir) -> Warehouse:
    root = tmp_path_factory.mktemp("loaders")
    (root / "c.txt").write_text("\n\n".join(tiny_texts(5)))
    wh = Warehouse(root / "wh")
    add_corpus(wh, "c", str(root / "c.txt"), tiny_tokenizer_dir)
    return wh


@property_settings(max_examples=80)
@given(case=MALFORMED)
@example(case=(("docs.jsonl", b'{"text": "fine"}\n{"text": 3}\n'), []))  # the reported case: read as "3"
@example(case=(("docs.parquet", b""), []))  # found: a traceback of ArrowInvalid
@example(case=(("spec", "generated:lua?docs=99999999999999999999"), []))  # found: generates until memory runs out
@example(case=(("spec", "generated:stories?doc="), []))  # found: an unknown option with no value was ignored
def test_malformed_sources_fail_in_one_line_and_write_nothing(warehouse, tiny_tokenizer_dir, tmp_path_factory, case):
    (name, content), options = case
    source = content if name == "spec" else tmp_path_factory.mktemp("source") / name
    if name != "spec":
        source.write_bytes(content)
    before = tree_hashes(warehouse.root)
    result = run_cli(warehouse, "corpus", "add", "x", "--source", str(source), "--tokenizer", str(tiny_tokenizer_dir), *options)
    assert result.exit_code == 1, result.output
    refusal_line(result)
    assert tree_hashes(warehouse.root) == before
