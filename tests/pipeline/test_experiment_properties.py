"""Property tests of the experiment-file parser: `featstore run --plan` on random malformed files and
`--set` overrides answers a plan or one `error:` line, never a traceback, and leaves the warehouse as it was."""

from __future__ import annotations

import math
import re

import pytest
from helpers import property_settings, refusal_line, run_cli, tree_hashes
from hypothesis import example, given
from hypothesis import strategies as st

from featstore.pipeline.experiment import DEFAULT_EXPERIMENT, experiments_dir
from featstore.warehouse import Warehouse

SHIPPED = (experiments_dir() / DEFAULT_EXPERIMENT).read_text()
# the keys of the shipped file and the optional ones of docs/experiments.md, whole tables included
KEYS = """
    name seed description family family.preset family.hidden_size family.base.lr family.finetune.epochs tokenizer
    tokenizer.source tokenizer.vocab_size tokenizer.corpora corpora corpora.lua corpora.lua.source
    corpora.lua.evaluate corpora.new models models.base models.base.corpus models.base.kind models.base.home
    models.base.step models.lua.parent models.lua.corpus models.luastories.parents models.luastories.method
    models.luastories.t models.new.path models.new.parents models.new.relation saes saes.default saes.default.preset
    saes.default.init saes.default.seed saes.default.k saes.base.seed1 saes.base.seed1.seed saes.base.main.slices
    saes.base.main.path saes.lua.seed1.preset slices slices.eval-lua slices.eval-lua.corpus slices.eval-lua.part
    slices.eval-lua.tokens slices.eval-lua.models slices.eval-lua.min_docs analyses analyses.edges analyses.stats
    analyses.r_floor analyses.ingest_batch analyses.explain.top analyses.sweeps.merge-sweep.models
    analyses.sweeps.merge-sweep.steps analyses.sweeps.x unknown.key
""".split()
NAMES = ["base", "lua", "tinystories", "luastories", "eval-lua", "all_tokens", "slerp", "main", "", "default", "x"]


def literal(value) -> str:
    """A TOML literal of `value` (what `--set KEY=VALUE` reads; text it cannot read is taken as a string)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {literal(v)}' for k, v in value.items()) + "}"


SCALARS = (st.integers(-2**70, 2**70) | st.floats() | st.booleans() | st.sampled_from(NAMES)
           | st.text(max_size=12) | st.sampled_from([0, -1, 1, 2, 0.5, 1e308]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(NAMES + ["source", "corpus", "parent", "seed"]) | st.text(max_size=5), inner, max_size=3), max_leaves=6)
RAW = st.one_of(VALUES.map(literal), st.text(max_size=20))  # also text that is no TOML value at all
OVERRIDE_KEYS = st.sampled_from(KEYS) | st.lists(st.sampled_from(NAMES) | st.text(max_size=4), min_size=1,
                                                  max_size=4).map(".".join)
# the keys that hold lists of names, given lists of anything (a list where a name belongs, a number...)
LIST_KEYS = [k for k in KEYS if k.rsplit(".", 1)[-1] in ("corpora", "parents", "models", "slices", "stats", "edges")]
OVERRIDES = st.one_of(st.tuples(OVERRIDE_KEYS, RAW).map("=".join),
                      st.tuples(st.sampled_from(LIST_KEYS), st.lists(VALUES, min_size=1, max_size=3).map(literal)).map("=".join),
                      st.text(max_size=10))


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("plan") / "wh")
    wh.create()
    return wh


def check(result, wh: Warehouse, before: dict) -> None:
    """A plan (exit 0) or one `error:` line (exit 1), never an unexpected exception; nothing written."""
    if result.exit_code == 0:
        assert re.search(r"\d+ of \d+ steps would run\n$", result.output), result.output
    elif result.exit_code == 2:  # click's usage error, e.g. an override that reads as an option
        assert "Error: " in result.output and "Traceback" not in result.output, result.output
    else:
        assert result.exit_code == 1, result.output
        refusal_line(result)
    assert tree_hashes(wh.root) == before


@property_settings(max_examples=60)
@given(overrides=st.lists(OVERRIDES, min_size=1, max_size=3))
@example(overrides=["slices.eval-lua.models=[[1]]"])  # found: unhashable list where a model name belongs
@example(overrides=["tokenizer.corpora=[1]"])  # found: a number where a corpus name belongs
@example(overrides=["analyses.edges=[[[1], 'lua']]"])
@example(overrides=["analyses.r_floor=nan"])  # found: accepted, a floor nothing passes
@example(overrides=["family.hidden_size=0"])  # found: accepted, a model of width 0
def test_random_overrides_plan_or_fail_in_one_line(warehouse, overrides):
    before = tree_hashes(warehouse.root)
    check(run_cli(warehouse, "run", "--plan", *[arg for o in overrides for arg in ("--set", o)]), warehouse, before)


LINES = SHIPPED.splitlines()


@st.composite
def mutated_files(draw) -> bytes:
    """The shipped file with lines deleted, duplicated or replaced by random text (not always UTF-8)."""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(["delete", "duplicate", "replace", "value"]))
        if edit == "delete":
            del lines[i]
        elif edit == "duplicate":
            lines.insert(i, lines[i])
        elif edit == "replace":
            lines[i] = draw(st.text(max_size=30))
        else:
            lines[i] = f"{draw(st.sampled_from(KEYS)).split('.')[-1]} = {literal(draw(VALUES))}"
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@property_settings(max_examples=60)
@given(content=mutated_files() | st.binary(min_size=1, max_size=200))
@example(content=b"\xc0")  # found: a traceback of UnicodeDecodeError
def test_random_experiment_files_plan_or_fail_in_one_line(warehouse, tmp_path_factory, content):
    file = tmp_path_factory.mktemp("experiment") / "exp.toml"
    file.write_bytes(content)
    before = tree_hashes(warehouse.root)
    check(run_cli(warehouse, "run", str(file), "--plan"), warehouse, before)
