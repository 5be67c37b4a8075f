"""The one capture hook: it records the down projection's input, and stopping early changes nothing."""

from __future__ import annotations

import pytest
import torch

from featstore.errors import FeatstoreError
from featstore.models.capture import (
    capture_mlp_hidden,
    iter_mlp_activations,
    mlp_activations,
    mlp_down_proj,
    splice_mlp_hidden,
)
from featstore.models.hf import load_model
from featstore.models.hooks import hook_name
from featstore.models.layouts import hook_site


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_model(tiny_model_dir, "cpu")


def test_captures_silu_gate_times_up(model):
    ids = torch.randint(0, 300, (2, 10))
    with capture_mlp_hidden(model, 0) as captured:
        model(input_ids=ids)
    mlp = model.model.layers[0].mlp
    # Recompute the MLP hidden activation from the MLP's own input to check what was captured.
    seen = {}
    handle = mlp.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    model(input_ids=ids)
    handle.remove()
    expected = torch.nn.functional.silu(mlp.gate_proj(seen["x"])) * mlp.up_proj(seen["x"])
    assert captured.value.shape == (2, 10, 64)
    torch.testing.assert_close(captured.value, expected)
    assert hook_site(model, hook_name(0)).width == 64 and hook_name(0) == "blocks.0.mlp.hook_post"


def test_stopping_early_gives_the_same_activations(model):
    ids = torch.randint(0, 300, (3, 12))
    with capture_mlp_hidden(model, 0) as captured:
        model(input_ids=ids)
    torch.testing.assert_close(mlp_activations(model, ids, 0), captured.value)
    assert not mlp_down_proj(model, 0)._forward_pre_hooks, "hook must be removed"


def test_stream_keeps_token_order_across_ragged_blocks(model):
    blocks = [torch.randint(0, 300, (n,)) for n in (7, 12, 3, 12, 5)]
    streamed = torch.cat(list(iter_mlp_activations(model, blocks, layer=0, batch_size=2, device="cpu")))
    one_by_one = torch.cat([mlp_activations(model, b[None], 0)[0] for b in blocks])
    assert streamed.shape == (sum(len(b) for b in blocks), 64)
    torch.testing.assert_close(streamed, one_by_one, atol=1e-5, rtol=1e-4)


def test_splice_replaces_the_activation(model):
    ids = torch.randint(0, 300, (1, 8))
    clean = model(input_ids=ids).logits
    with splice_mlp_hidden(model, 0, torch.zeros_like):
        ablated = model(input_ids=ids).logits
    with splice_mlp_hidden(model, 0, lambda a: a):
        identity = model(input_ids=ids).logits
    torch.testing.assert_close(identity, clean)
    assert not torch.allclose(ablated, clean)


def test_missing_layer_and_bad_model_folder_are_one_line_errors(model, tmp_path):
    with pytest.raises(FeatstoreError, match="layer 3 does not exist"):
        mlp_down_proj(model, 3)
    with pytest.raises(FeatstoreError, match="cannot load model"):
        load_model(tmp_path, "cpu")
