"""Fixtures of the activation tests: a registered model with a random SAE and an evaluation corpus (`setup`),
shared by the ingest, sharding and partition-layout tests."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_texts

from featstore.saes import build_sae, save_sae


@pytest.fixture
def setup(warehouse, tiny_model_dir, tiny_tokenizer_dir, tmp_path):
    """Model 'm' with a random SAE 'm-sae' (b_enc shifted so ~half the features fire) and corpus 'c'."""
    from featstore.models.catalog import register_model
    from featstore.saes.catalog import register_sae
    from featstore.text.slices import add_corpus

    register_model(warehouse, "m", tiny_model_dir, kind="base")
    torch.manual_seed(0)
    sae = build_sae("relu", d_in=64, d_sae=96, model_name="m")
    folder = save_sae(sae, tmp_path / "sae")
    register_sae(warehouse, "m-sae", "m", folder, hook_point="blocks.0.mlp.hook_post", layer=0, d_in=64, d_sae=96,
                 architecture="relu")
    source = tmp_path / "eval.txt"
    source.write_text("\n\n".join(tiny_texts(12, seed=5)))
    add_corpus(warehouse, "c", str(source), tiny_tokenizer_dir)
    return warehouse, folder
