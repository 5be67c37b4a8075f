"""Every named preset: model families (the zoo), SAE training runs and the whole pipeline.

Each kind is a frozen-or-plain dataclass whose fields are the knobs (and, for SAE runs, the CLI's
options, from each field's `help`), plus a dict of named instances. A notebook can pass its own
instance wherever a preset name is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

from featstore.errors import FeatstoreError

BASE, LUA, STORIES, MERGED = "base", "lua", "tinystories", "luastories"


def setting(default: Any, help: str, **cli) -> Any:
    """A dataclass field with the help text the CLI shows for it (and `flags`, `choices` for its option)."""
    return field(default=default, metadata={"help": help, **cli})


def _named(kind: str, presets: dict, name: str):
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


_TINY_CORPORA, _TINY_DOMAINS = family_specs(childes_docs=20_000, lua_docs=4_000, stories_docs=10_000)
_PAPER_CORPORA, _PAPER_DOMAINS = family_specs(childes_docs=60_000, lua_docs=20_000, stories_docs=100_000)

MODEL_PRESETS: dict[str, ModelPreset] = {
    "tiny": ModelPreset(
        name="tiny", hidden_size=128, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=8192, tokenizer="bpe", block_size=128,
        base=Schedule(lr=2e-3, weight_decay=0.1, warmup_steps=20, batch_size=16, max_tokens=500_000),
        finetune=Schedule(lr=1e-3, weight_decay=0.01, warmup_steps=10, batch_size=16, max_tokens=125_000),
        corpora=_TINY_CORPORA, domains=_TINY_DOMAINS, eval_tokens=16_384,
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
        preset = _named("", MODEL_PRESETS, preset)
    return replace(preset, **overrides) if overrides else preset


# -- SAE training runs ------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    """Hyperparameters of one SAE run. `tokens` counts training activations (token positions);
    `options` holds the architecture's own hyperparameters (its config's fields, e.g. {"k": 32})."""

    architecture: str = setting("relu", "SAE architecture.", flags=("--architecture", "--arch"),
                                choices="featstore.saes:ARCHITECTURES")
    expansion: int = setting(16, "Dictionary size as a multiple of d_in (paper: 16).")
    lr: float = setting(1e-4, "Adam learning rate.")
    beta2: float = setting(0.9999, "Adam beta2.")
    batch_blocks: int = setting(128, "Token blocks per batch (paper: 128).")
    block_len: int = setting(24, "Tokens per block.")
    tokens: int = setting(12_000_000, "Training activations (token positions).")
    seed: int = setting(0, "Seed of the initial weights (and of the text drawn and the batch order, unless data_seed is set).")
    data_seed: int | None = None  # seed of the text drawn and the batch order (None: `seed`); seed replicas share it
    layer: int = setting(0, "Decoder layer whose MLP is read.")
    resample_every: int = setting(2_000, "Steps; a feature silent for this many steps is resampled.")
    eval_tokens: int = setting(100_000, "Evaluation activations after training.")
    options: dict = field(default_factory=dict)

    @property
    def batch_tokens(self) -> int:
        return self.batch_blocks * self.block_len

    @property
    def text_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def steps(self) -> int:
        return max(1, math.ceil(self.tokens / self.batch_tokens))


SAE_PRESETS = {
    # The paper: 16x dictionary, Adam 1e-4 (beta2 0.9999), 128 x 24-token blocks, ~12M tokens.
    "paper": TrainSettings(),
    # Tuned on a 1-layer hidden-128 / MLP-512 Mistral (the zoo's tiny shape): see README, "SAEs".
    "tiny": TrainSettings(
        expansion=4, lr=1e-3, beta2=0.999, batch_blocks=32, tokens=1_200_000, resample_every=500, eval_tokens=20_000,
    ),
}


def sae_preset(preset: str, **overrides) -> TrainSettings:
    """An SAE preset with the given fields replaced (None values are ignored).

    Hyperparameters of the chosen architecture (k, l1_coefficient, ...) go to `options`; those of
    other architectures are ignored, so one set of CLI flags serves them all.
    """
    from featstore.saes import ARCHITECTURES, get_architecture
    from featstore.saes.base import option_flag

    base, given = _named("SAE ", SAE_PRESETS, preset), {k: v for k, v in overrides.items() if v is not None}
    own = {f.name for f in fields(TrainSettings)} - {"options"}
    hyper = {f.name for cls in ARCHITECTURES.values() for f in cls.config_class.hyperparameters()}
    unknown = sorted(set(given) - own - hyper)
    if unknown:
        raise FeatstoreError(f"unknown SAE setting(s) {', '.join(unknown)}")
    arch = get_architecture(given.get("architecture", base.architecture))
    if not arch.trainable:
        raise FeatstoreError(f"featstore loads {arch.architecture} SAEs from SAELens but does not train them; use one of {', '.join(ARCHITECTURES)}")
    options = dict(base.options) if arch.architecture == base.architecture else {}
    options.update({f.name: given[f.name] for f in arch.config_class.hyperparameters() if f.name in given})
    for required in arch.config_class.required():
        if required.name not in options:
            raise FeatstoreError(f"a {arch.architecture} SAE needs {option_flag(required)} ({required.metadata['help'].rstrip('.').lower()})")
    settings = {**{k: v for k, v in given.items() if k in own}, "architecture": arch.architecture, "options": options}
    flags = {**{name: "--" + name.replace("_", "-") for name in own},
             **{f.name: option_flag(f) for f in arch.config_class.hyperparameters()}}
    for name, value in [*settings.items(), *options.items()]:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (value <= 0 if name in POSITIVE else value < 0):
            raise FeatstoreError(f"{flags[name]} must be {'positive' if name in POSITIVE else 'zero or more'} (got {value})")
    return replace(base, **settings)


# counts and sizes of an SAE run (and TopK's k) must be positive; other numbers (seed, layer, L1) >= 0
POSITIVE = {"expansion", "lr", "batch_blocks", "block_len", "tokens", "resample_every", "eval_tokens", "k"}


# -- the pipeline -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunPreset:
    """Pipeline-level sizes; model and SAE sizes come from a model preset and an SAE preset."""

    name: str
    zoo: str                      # MODEL_PRESETS key: model shapes, corpora, token budgets
    sae: str                      # SAE_PRESETS key
    zoo_overrides: dict = field(default_factory=dict)
    sae_overrides: dict = field(default_factory=dict)
    eval_tokens: int = 20_000     # tokens per evaluation slice
    merge_t: float = 0.58
    sweep_steps: int = 11
    sweep_eval_tokens: int | None = None  # validation tokens per domain and t (None: the zoo preset's)
    explain_top: int = 24         # most frequently firing features explained per SAE
    explain_sample: int = 48      # plus every persisting feature and this many others per edge and side
    ingest_batch: int = 16
    r_floor: float = 0.2
    seed_replicas: int = 1        # extra SAEs per model differing only in seed: the persistence noise floor


RUN_PRESETS = {
    "tiny": RunPreset("tiny", zoo="tiny", sae="tiny"),
    "paper": RunPreset("paper", zoo="paper", sae="paper", eval_tokens=120_000, explain_top=200, ingest_batch=32),
}


def run_preset(preset: str | RunPreset) -> RunPreset:
    return _named("", RUN_PRESETS, preset) if isinstance(preset, str) else preset
