"""Fixtures of the correlation tests: random sparse activations of two SAEs (`data`) and a warehouse holding
them (`filled`), shared by the SQL engine's tests, the array and Spark engines' and the multi-file partitions'."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import D_A, D_B, N_TOKENS, VOCAB


def sparse_side(rng, d_sae, density):
    """Dense (N, d_sae) activations: positive where firing, else 0; one dead and one rare feature."""
    dense = np.where(rng.random((N_TOKENS, d_sae)) < density, rng.gamma(2.0, 1.0, (N_TOKENS, d_sae)), 0.0)
    dense[:, 0] = 0.0                                   # dead: never fires
    dense[:, 1] = 0.0
    dense[rng.integers(N_TOKENS), 1] = 1.5             # fires once
    return dense.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    a = sparse_side(rng, D_A, rng.uniform(0.05, 0.5, D_A))
    b = sparse_side(rng, D_B, rng.uniform(0.05, 0.5, D_B))
    b[:, 5] = np.where(a[:, 7] > 0, a[:, 7] * 2 + rng.random(N_TOKENS).astype(np.float32) * 0.1, 0)  # a planted match
    b[:, 6] = np.where(rng.random(N_TOKENS) < 0.1, 0, 1.0 + rng.random(N_TOKENS) * 0.2).astype(np.float32)  # fires almost always
    b[a[:, 1] > 0] = 0.0  # nothing of b fires where a's feature 1 fires: its best match cannot co-fire
    return a, b, rng.integers(0, VOCAB, N_TOKENS)


@pytest.fixture(scope="module")
def filled(module_catalog, data):
    """Two models sharing a tokenizer, one SAE each, one corpus with activations of both (shared by the tests)."""
    a, b, token_ids = data
    fake_catalog = module_catalog
    fake_catalog.model("m1")
    fake_catalog.model("m2", parents=["m1"], relation="finetune")
    fake_catalog.sae("sa", "m1", D_A)
    fake_catalog.sae("sb", "m2", D_B)
    start = fake_catalog.corpus("c", N_TOKENS, token_ids)
    for sae, dense in (("sa", a), ("sb", b)):
        tok, feature = np.nonzero(dense)
        fake_catalog.activations(sae, "c", tok + start, feature, dense[tok, feature], N_TOKENS)
    return fake_catalog.wh
