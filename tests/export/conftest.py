"""Fixtures of the export tests: a finished tiny warehouse with one SAE's activations stored."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from helpers import invoke


@pytest.fixture
def ingested(registered_warehouse):
    """The registered template's SAE 'base-sae' ingested on 'evalset', with one stored explanation."""
    wh = registered_warehouse
    result = invoke("ingest", "base", "--sae", "base-sae", "--device", "cpu", "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    with wh.transaction() as con:
        con.execute("INSERT INTO explanations (sae, corpus, feature, explainer, prompt_version, explanation, n_samples)"
                    " VALUES ('base-sae', 'evalset', 3, 'builtin', 'v1', 'the word cat', 5)")
    table = pq.read_table(wh.partition_files("base-sae", "evalset"))
    stored = {(t, f): a for t, f, a in zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act")))}
    return wh, stored
