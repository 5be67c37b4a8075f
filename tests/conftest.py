"""Shared fixtures: a fresh warehouse, a tiny BPE tokenizer, a tiny random Mistral model folder.

Everything is built locally in seconds; no test touches a model or data hub.
"""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = (
    "the cat sat on a mat and the dog ran to the park . def foo ( x ) : return x + 1 "
    "local function bar ( t ) for i = 1 , # t do print ( t [ i ] ) end end "
    "once upon a time there was a little girl who liked to play with her ball"
).split()


def tiny_texts(n_docs: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n_docs)]


@pytest.fixture
def warehouse(tmp_path):
    from featstore.warehouse import Warehouse

    return Warehouse(tmp_path / "wh")


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from featstore.tokenizer import train_bpe

    out = tmp_path_factory.mktemp("tokenizer")
    train_bpe(tiny_texts(200), vocab_size=400, out_dir=out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer_dir):
    """A random one-layer Mistral (hidden 32, MLP 64) saved as an HF folder with its tokenizer."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from featstore.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    model = MistralForCausalLM(config)
    out = tmp_path_factory.mktemp("model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
