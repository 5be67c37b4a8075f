"""Named model families (the zoo); SAE training presets are in `featstore.saes.presets`, whole experiments in experiments/*.toml.

Each kind is a frozen-or-plain dataclass whose fields are the knobs (and, for SAE runs, the CLI's
options, from each field's `help`), plus a dict of named instances. A notebook can pass its own
instance wherever a preset name is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from featstore.errors import FeatstoreError
from featstore.text.debian import CORPUS_FILES, DEFAULT_OUT

BASE, LUA, STORIES = "base", "lua", "tinystories"


def setting(default: Any, help: str, **cli) -> Any:
    """A dataclass field with the help text the CLI shows for it (and `flags`, `choices` for its option)."""
    return field(default=default, metadata={"help": help, **cli})


def named_preset(kind: str, presets: dict, name: str):
    if name not in presets:
        raise FeatstoreError(f"unknown {kind}preset {name!r}; choose one of {', '.join(presets)}")
    return presets[name]


# -- model families ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """Optimiser settings of one training run. `max_tokens` counts tokens processed over all epochs."""

    lr: float
    weight_decay: float
    warmup_steps: int
    batch_size: int
    max_tokens: int
    epochs: int = 1
    grad_clip: float = 1.0


@dataclass(frozen=True)
class ModelPreset:
    """Architecture, tokenizer, corpora and schedules of one model family."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tokenizer: str             # "bpe": train a byte-level BPE of vocab_size on the family; "mistral"; or a folder / hub id
    block_size: int
    base: Schedule
    finetune: Schedule
    corpora: dict[str, str]    # model role (base, lua, tinystories) -> corpus spec it trains on
    domains: dict[str, str]    # evaluation domain -> corpus spec whose validation part measures it
    eval_tokens: int           # validation tokens per domain
    tokenizer_chars: int = 3_000_000  # BPE training text per corpus: a stable 8k vocabulary in seconds
    rope_theta: float = 1e4
    num_hidden_layers: int = 1
    max_position_embeddings: int = 2048

    @classmethod
    def from_dict(cls, data: dict) -> ModelPreset:
        """Inverse of `asdict(preset)`, as stored in a model's hyperparams."""
        return cls(**{**data, "base": Schedule(**data["base"]), "finetune": Schedule(**data["finetune"])})


def family_specs(childes_docs: int, lua_docs: int, stories_docs: int) -> tuple[dict[str, str], dict[str, str]]:
    """(corpora, domains) of the paper's family over the built-in generators, with these document counts."""
    childes = f"generated:childes?docs={childes_docs}"
    lua = f"generated:lua?docs={lua_docs}"
    stories = f"generated:stories?docs={stories_docs}"
    corpora = {BASE: f"python-stdlib=0.5+{childes}=0.5", LUA: lua, STORIES: stories}
    domains = {"python": "python-stdlib", "english": childes, LUA: lua, STORIES: stories}
    return corpora, domains


def real_specs(folder: str) -> tuple[dict[str, str], dict[str, str]]:
    """(corpora, domains) over the real corpora `featstore corpus debian` writes into `folder`."""
    python, lua, english = (f"{folder}/{CORPUS_FILES[k]}" for k in ("python", "lua", "english"))
    return {BASE: f"{python}=0.5+{english}=0.5", LUA: lua, "english": english}, {"python": python, "english": english, LUA: lua}


_TINY_CORPORA, _TINY_DOMAINS = family_specs(childes_docs=20_000, lua_docs=4_000, stories_docs=10_000)
_REAL_CORPORA, _REAL_DOMAINS = real_specs(str(DEFAULT_OUT))
_PAPER_CORPORA, _PAPER_DOMAINS = family_specs(childes_docs=60_000, lua_docs=20_000, stories_docs=100_000)

MODEL_PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        name="tiny", hidden_size=128, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=8192, tokenizer="bpe", block_size=128,
        base=Schedule(lr=2e-3, weight_decay=0.1, warmup_steps=20, batch_size=16, max_tokens=500_000),
        finetune=Schedule(lr=1e-3, weight_decay=0.01, warmup_steps=10, batch_size=16, max_tokens=125_000),
        corpora=_TINY_CORPORA, domains=_TINY_DOMAINS, eval_tokens=16_384,
    ),
    # Real Python, Lua and English (featstore corpus debian) on two CPU cores: wide enough, and trained long
    # enough, that every model passes 0.30 validation accuracy on its own domain (docs/real-data.md).
    "real": ModelPreset(
        name="real", hidden_size=256, intermediate_size=512, num_attention_heads=8, num_key_value_heads=4,
        vocab_size=1024, tokenizer="bpe", block_size=256,
        base=Schedule(lr=2e-3, weight_decay=0.1, warmup_steps=50, batch_size=16, max_tokens=10_000_000, epochs=3),
        finetune=Schedule(lr=1e-3, weight_decay=0.01, warmup_steps=20, batch_size=16, max_tokens=3_000_000, epochs=2),
        corpora=_REAL_CORPORA, domains=_REAL_DOMAINS, eval_tokens=131_072,  # Lua files are long: 32k tokens are a few files
    ),
    # The paper's shapes and optimiser settings; token budgets sized for a GPU run of minutes.
    "paper": ModelPreset(
        name="paper", hidden_size=512, intermediate_size=1024, num_attention_heads=16, num_key_value_heads=8,
        vocab_size=32000, tokenizer="mistral", block_size=256,
        base=Schedule(lr=6e-4, weight_decay=0.1, warmup_steps=0, batch_size=64, max_tokens=24_000_000, epochs=3),
        finetune=Schedule(lr=2e-5, weight_decay=0.01, warmup_steps=500, batch_size=64, max_tokens=12_000_000),
        corpora=_PAPER_CORPORA, domains=_PAPER_DOMAINS, eval_tokens=131_072,
    ),
}


def model_preset(preset: str | ModelPreset, **overrides) -> ModelPreset:
    """A model-family preset by name (or as given), with fields replaced by `overrides` (e.g. block_size=64)."""
    if isinstance(preset, str):
        preset = named_preset("", MODEL_PRESETS, preset)
    return replace(preset, **overrides) if overrides else preset
