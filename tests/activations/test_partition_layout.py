"""Partition layout (featstore.warehouse.storage): sorted by (feature, tok) in prunable row groups, and the opt-in
half-precision act dtypes stored exactly as declared."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch

from featstore.activations.ingest import ingest, rounded
from featstore.errors import FeatstoreError
from featstore.warehouse import storage


def rows(path):
    table = pq.read_table(path)
    return {(t, f): a for t, f, a in zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act")))}


def test_partitions_are_sorted_by_feature_in_prunable_row_groups(setup, monkeypatch):
    wh, _ = setup
    monkeypatch.setattr(storage, "ROW_GROUP_ROWS", 2048)
    done = ingest(wh, "m", device="cpu", progress=False)
    table = pq.read_table(done["path"])
    assert table.sort_by([("feature", "ascending"), ("tok", "ascending")]).equals(table)
    meta = pq.read_metadata(done["path"])
    assert meta.num_row_groups == -(-done["rows"] // 2048) > 2
    bounds = [(meta.row_group(g).column(1).statistics.min, meta.row_group(g).column(1).statistics.max) for g in range(meta.num_row_groups)]
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(bounds, bounds[1:]))  # feature ranges do not overlap
    encodings = {meta.schema.column(i).name: meta.row_group(0).column(i).encodings for i in range(3)}
    assert "DELTA_BINARY_PACKED" in encodings["tok"] and "BYTE_STREAM_SPLIT" in encodings["act"]
    assert storage.act_dtype(done["path"]) == "float32"
    assert wh.scalar("SELECT count(*) FROM activations WHERE sae = 'm-sae' AND feature BETWEEN 10 AND 20") == sum(
        10 <= f <= 20 for f in table.column("feature").to_pylist())


@pytest.mark.parametrize("act_dtype", ["bfloat16", "float16"])
def test_half_precision_is_stored_exactly_as_declared(setup, act_dtype):
    wh, _ = setup
    full = ingest(wh, "m", device="cpu", progress=False)
    exact = rows(full["path"])
    half = ingest(wh, "m", device="cpu", progress=False, act_dtype=act_dtype)
    stored = rows(half["path"])
    expected = {k: torch.tensor(a).to(getattr(torch, act_dtype)).float().item() for k, a in exact.items()}
    assert stored == {k: a for k, a in expected.items() if a > 0}  # exactly the rounded values, zeros dropped
    assert storage.act_dtype(half["path"]) == act_dtype and half["act_dtype"] == act_dtype
    assert half["bytes_per_activation"] < full["bytes_per_activation"] - 0.5


def test_float16_overflow_is_refused():
    assert rounded(torch.tensor([1.0, 3.0]), "bfloat16").tolist() == [1.0, 3.0]
    assert rounded(torch.tensor([1e30]), "bfloat16").item() == pytest.approx(1e30, rel=1e-2)
    with pytest.raises(FeatstoreError, match="exceed float16's range"):
        rounded(torch.tensor([1.0, 7e4]), "float16")


def test_unknown_act_dtype_is_refused_before_any_work(setup):
    wh, _ = setup
    with pytest.raises(FeatstoreError, match="unknown --act-dtype 'int8'"):
        ingest(wh, "m", device="cpu", progress=False, act_dtype="int8")
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0
