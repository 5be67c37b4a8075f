"""Property tests of `featstore import-activations`: a random Parquet file (any columns, any types, values in
and out of range, nulls, NaN, duplicates) is imported or refused in one `error:` line, never a traceback; a
refused one leaves the warehouse as it was."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import property_settings, refusal_line, run_cli, tree_hashes
from hypothesis import example, given
from hypothesis import strategies as st

from featstore.warehouse import Warehouse

N_TOKENS, D_SAE = 40, 16  # the slice's tok range is 0..N_TOKENS-1 (checked below), the SAE's features 0..15
INTEGERS = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
FLOATS = [pa.float16(), pa.float32(), pa.float64()]
OTHERS = [pa.string(), pa.bool_(), pa.null(), pa.timestamp("s")]
COLUMNS = ["tok", "feature", "act", "doc_id", "pos", "extra"]

VALID = {"tok": st.integers(0, N_TOKENS - 1), "feature": st.integers(0, D_SAE - 1), "act": st.floats(-1, 3),
         "doc_id": st.integers(0, 11), "pos": st.integers(0, 10)}
BAD_VALUES = {"tok": st.integers(-2**63, 2**64 - 1), "feature": st.integers(-2**40, 2**40), "doc_id": st.integers(-5, 2**40),
              "pos": st.integers(-5, 2**40), "act": st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300])}
DAMAGES = ["drop", "rename", "type", "value", "null", "duplicate"]


def cell(value, kind: pa.DataType):
    """`value` as `kind` holds it: integers wrapped into the type's range (as a careless writer's cast would)."""
    number = int(value) if math.isfinite(value) else 0
    if pa.types.is_integer(kind):
        wrapped = number % 2**kind.bit_width
        return wrapped - 2**kind.bit_width if pa.types.is_signed_integer(kind) and wrapped >= 2**(kind.bit_width - 1) else wrapped
    if pa.types.is_timestamp(kind):
        return number % 2**31  # seconds Parquet can store
    if kind == pa.float16():
        with np.errstate(over="ignore"):  # 1e300 becomes inf, as numpy's own cast makes it
            return np.float16(value)
    if pa.types.is_floating(kind):
        return float(value)
    return str(value) if kind == pa.string() else bool(value)


def column(values: list, kind: pa.DataType, nulls: list[bool]) -> pa.Array:
    if kind == pa.null():
        return pa.nulls(len(values))
    return pa.array([None if null else cell(v, kind) for v, null in zip(values, nulls, strict=True)], kind)


@st.composite
def tables(draw) -> pa.Table:
    """A valid file of either layout, then up to three damages: a column dropped or renamed, a column of
    another type, a value out of range, a null, a duplicated row."""
    layout = draw(st.sampled_from([("tok", "feature", "act"), ("doc_id", "pos", "feature", "act")]))
    n_rows = draw(st.integers(1, 12))
    values = {name: draw(st.lists(VALID[name], min_size=n_rows, max_size=n_rows)) for name in layout}
    kinds = {name: draw(st.sampled_from(FLOATS if name == "act" else INTEGERS)) for name in layout}
    nulls = {name: [False] * n_rows for name in layout}
    for _ in range(draw(st.integers(0, 3))):
        name, damage = draw(st.sampled_from(sorted(values))), draw(st.sampled_from(DAMAGES))
        row = draw(st.integers(0, n_rows - 1))
        if damage == "drop":
            del values[name]
        elif damage == "rename":
            values[draw(st.sampled_from(COLUMNS))] = values.pop(name)
        elif damage == "type":
            kinds[name] = draw(st.sampled_from(INTEGERS + FLOATS + OTHERS))
        elif damage == "value":
            values[name][row] = draw(BAD_VALUES.get(name, st.integers()))
        elif damage == "null":
            nulls[name] = [null or i == row for i, null in enumerate(nulls.get(name, [False] * n_rows))]
        else:
            for column_values in values.values():
                column_values[row] = column_values[0]
        if not values:
            break
    return pa.table({name: column(v, kinds.get(name, pa.int64()), nulls.get(name, [False] * n_rows))
                     for name, v in values.items()})


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, registered_template) -> Warehouse:
    """The registered warehouse (corpus 'evalset', SAE 'base-sae' of 16 features), its catalog copied once."""
    wh = Warehouse(tmp_path_factory.mktemp("pristine") / "wh")
    wh.root.mkdir()
    shutil.copy(registered_template.db_path, wh.db_path)
    assert wh.scalar("SELECT n_tokens FROM corpora WHERE name = 'evalset'") >= N_TOKENS
    return wh


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    """Where each example works: a fresh copy of `pristine` (an import that succeeds changes it)."""
    return Warehouse(tmp_path_factory.mktemp("import") / "wh")


@property_settings(max_examples=60)
@given(table=tables(), sae=st.sampled_from(["base-sae"] * 5 + ["nosuch"]), corpus=st.sampled_from(["evalset"] * 5 + ["nosuch"]))
@example(table=pa.table({"tok": pa.array([2**63], pa.uint64()), "feature": pa.array([1], pa.int32()),
                         "act": pa.array([1.0], pa.float32())}), sae="base-sae", corpus="evalset")  # a tok beyond BIGINT
def test_random_activation_files_import_or_fail_in_one_line(pristine, warehouse, tmp_path_factory, table, sae, corpus):
    shutil.rmtree(warehouse.root, ignore_errors=True)
    shutil.copytree(pristine.root, warehouse.root)
    file = tmp_path_factory.mktemp("acts") / "acts.parquet"
    pq.write_table(table, file)
    before = tree_hashes(warehouse.root)
    result = run_cli(warehouse, "import-activations", str(file), "--sae", sae, "--corpus", corpus)
    if result.exit_code == 0:
        assert "activations ->" in result.output, result.output
    else:
        assert result.exit_code == 1, result.output
        refusal_line(result)
        assert tree_hashes(warehouse.root) == before


@property_settings(max_examples=10)
@given(content=st.binary(max_size=300))
def test_a_file_that_is_no_parquet_fails_in_one_line(pristine, tmp_path_factory, content):
    file = tmp_path_factory.mktemp("acts") / "acts.parquet"
    file.write_bytes(content)
    before = tree_hashes(pristine.root)
    result = run_cli(pristine, "import-activations", str(file), "--sae", "base-sae", "--corpus", "evalset")
    assert result.exit_code == 1 and "is not a readable Parquet file" in refusal_line(result), result.output
    assert tree_hashes(pristine.root) == before
