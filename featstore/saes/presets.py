"""Named SAE training runs: the hyperparameters of one run, and the paper's and the tiny preset.

`TrainSettings`' fields are also the CLI's options of `featstore sae train` (from each field's `help`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields, replace

from featstore.errors import FeatstoreError
from featstore.models.presets import named_preset, setting
from featstore.saes.architectures import ARCHITECTURES, get_architecture
from featstore.saes.base import option_flag


TRAINING_STEPS = ("auto", "sparse", "dense")  # see featstore.saes.sparse and docs/saes.md


@dataclass
class TrainSettings:
    """Hyperparameters of one SAE run. `tokens` counts training activations (token positions);
    `options` holds the architecture's own hyperparameters (its config's fields, e.g. {"k": 32})."""

    architecture: str = setting("relu", "SAE architecture.", flags=("--architecture", "--arch"),
                                choices="featstore.saes.architectures:ARCHITECTURES")
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
    training_step: str = setting("auto", "Training step: sparse (after the encoder forward, only the active features; CPU), dense"
                                 " (every feature: the reference), auto (sparse on CPU, dense on CUDA).",
                                 choices="featstore.saes.presets:TRAINING_STEPS")
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
    # Tuned on a 1-layer hidden-128 / MLP-512 Mistral (the zoo's tiny shape): see docs/saes.md.
    "tiny": TrainSettings(
        expansion=4, lr=1e-3, beta2=0.999, batch_blocks=32, tokens=1_200_000, resample_every=500, eval_tokens=20_000,
    ),
    # The real family (hidden 256 / MLP 512, real text): the tiny settings trained twice as long, which on
    # real-lua.toml lowers FVU and raises the seed floors (docs/real-data.md).
    "real": TrainSettings(
        expansion=4, lr=1e-3, beta2=0.999, batch_blocks=32, tokens=2_400_000, resample_every=500, eval_tokens=20_000,
    ),
}


def sae_preset(preset: str, **overrides) -> TrainSettings:
    """An SAE preset with the given fields replaced (None values are ignored).

    Hyperparameters of the chosen architecture (k, l1_coefficient, ...) go to `options`; those of
    other architectures are ignored, so one set of CLI flags serves them all.
    """
    base, given = named_preset("SAE ", SAE_PRESETS, preset), {k: v for k, v in overrides.items() if v is not None}
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


def init_seed(seed: int, name: str) -> int:
    """A seed of the SAE's own for its initial weights: a stable hash of `seed` and its name, so SAEs
    of one experiment start apart (a shared start makes same-index matches look like persistence)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:4], "big") >> 1  # fits INTEGER


def independent_init(settings: TrainSettings, name: str) -> TrainSettings:
    """`settings` with the initial weights drawn from `init_seed`, the text and batch order kept."""
    return replace(settings, seed=init_seed(settings.seed, name), data_seed=settings.text_seed)


# counts and sizes of an SAE run (and TopK's k) must be positive; other numbers (seed, layer, L1) >= 0
POSITIVE = {"expansion", "lr", "batch_blocks", "block_len", "tokens", "resample_every", "eval_tokens", "k"}
