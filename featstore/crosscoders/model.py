"""The crosscoder and its folder format.

Two models' activations at one token, x = (x_parent, x_child), each multiplied by its model's
`activation_scale` (so both have mean squared norm d_in), are encoded by one set of latents:
f = σ(x_parent · W_enc[0] + x_child · W_enc[1] + b_enc), and each model is reconstructed by its own
decoder: x̂_m = f · W_dec[:, m] + b_dec[m]. A latent's decoder norms per model say whom it serves.
σ is BatchTopK (Bussmann et al. 2024: the k·batch largest decoder-norm-weighted activations of a
batch while training, one learned threshold afterwards), or ReLU with an L1 penalty weighted by the
summed decoder norms (Anthropic's crosscoder loss), kept for comparison: Minder et al. 2025 show it
invents exclusive latents.

Folder: `cfg.json` (format "featstore.crosscoder", version 1, the config's fields) and
`crosscoder_weights.safetensors` with W_enc (2, d_in, d_sae), b_enc (d_sae,), W_dec (d_sae, 2, d_in),
b_dec (2, d_in) and threshold (a scalar; 0 for L1). Index 0 is the parent, 1 the child.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from featstore.crosscoders.settings import SPARSITIES
from featstore.errors import FeatstoreError

FORMAT, VERSION = "featstore.crosscoder", 1
CONFIG_FILE, WEIGHTS_FILE = "cfg.json", "crosscoder_weights.safetensors"


@dataclass
class CrosscoderConfig:
    d_in: int
    d_sae: int
    models: tuple[str, str]                  # (parent, child) as registered in the warehouse
    hook_name: str
    sparsity: str = "batchtopk"
    k: int | None = None                     # batchtopk: mean active latents per token
    l1_coefficient: float | None = None      # l1: weight of the decoder-norm-weighted L1 penalty
    activation_scale: tuple[float, float] = (1.0, 1.0)
    seed: int | None = None
    training_tokens: int | None = None
    extra: dict = field(default_factory=dict)  # training metadata

    def __post_init__(self):
        self.models, self.activation_scale = tuple(self.models), tuple(float(s) for s in self.activation_scale)
        if self.sparsity not in SPARSITIES:
            raise FeatstoreError(f"unknown crosscoder sparsity {self.sparsity!r}; use {' or '.join(SPARSITIES)}")
        if self.sparsity == "batchtopk" and not (self.k and 0 < self.k <= self.d_sae):
            raise FeatstoreError(f"a BatchTopK crosscoder needs 0 < k <= d_sae ({self.d_sae}); got k={self.k}")
        if self.sparsity == "l1" and not (self.l1_coefficient and self.l1_coefficient > 0):
            raise FeatstoreError(f"an L1 crosscoder needs l1_coefficient > 0; got {self.l1_coefficient}")
        if len(self.models) != 2 or len(self.activation_scale) != 2:
            raise FeatstoreError("a crosscoder reads exactly two models (parent, child)")


class Crosscoder(nn.Module):
    def __init__(self, cfg: CrosscoderConfig):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.empty(2, d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.empty(d_sae, 2, d_in))
        self.b_dec = nn.Parameter(torch.zeros(2, d_in))
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("scale", torch.tensor(cfg.activation_scale).view(1, 2, 1))
        with torch.no_grad():
            direction = torch.randn(d_sae, 2, d_in)
            self.W_dec.copy_(direction / direction.norm(dim=-1, keepdim=True) * 0.1)  # small, equal per side
            self.W_enc.copy_(self.W_dec.permute(1, 2, 0))

    # -- the model ------------------------------------------------------------------------------

    def scaled(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2, d_in) activations in the units the crosscoder reads (each model's scale applied)."""
        return x.to(self.W_enc.dtype) * self.scale

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        """From scaled activations: Σ_m x_m · W_enc[m] + b_enc."""
        return torch.einsum("nmd,mdl->nl", x, self.W_enc) + self.b_enc

    def decoder_norms(self) -> torch.Tensor:
        """(d_sae, 2): each latent's decoder norm in the parent and in the child."""
        return self.W_dec.norm(dim=-1)

    def activation(self, pre: torch.Tensor, *, training: bool = False) -> torch.Tensor:
        acts = torch.relu(pre)
        if self.cfg.sparsity == "l1":
            return acts
        scores = acts * self.decoder_norms().sum(dim=1)
        if training:
            keep = scores.flatten().topk(min(self.cfg.k * len(scores), scores.numel()), sorted=False).indices
            mask = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
            mask[keep] = True
            return acts * mask.view_as(acts)
        return acts * (scores > self.threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations (n, d_sae) of raw (n, 2, d_in) activations, at inference."""
        return self.activation(self.pre_activation(self.scaled(x)))

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        """(n, 2, d_in) reconstruction, in scaled units."""
        return torch.einsum("nl,lmd->nmd", feats, self.W_dec) + self.b_dec

    def sparsity_loss(self, feats: torch.Tensor) -> torch.Tensor:
        if self.cfg.sparsity != "l1":
            return feats.new_zeros(())
        return self.cfg.l1_coefficient * (feats * self.decoder_norms().sum(dim=1)).sum(dim=1).mean()

    @torch.no_grad()
    def update_threshold(self, feats: torch.Tensor, momentum: float = 0.99) -> None:
        """BatchTopK's inference threshold: a running mean of the smallest score kept in a batch."""
        if self.cfg.sparsity != "batchtopk":
            return
        scores = feats * self.decoder_norms().sum(dim=1)
        kept = scores[scores > 0]
        if len(kept):
            low = kept.min()
            self.threshold.copy_(low if self.threshold == 0 else momentum * self.threshold + (1 - momentum) * low)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec,
                "threshold": self.threshold}


def tensor_shapes(d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
    return {"W_enc": (2, d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, 2, d_in), "b_dec": (2, d_in), "threshold": ()}


# -- the folder ------------------------------------------------------------------------------------


def save_crosscoder(xc: Crosscoder, folder: str | Path) -> Path:
    """Write cfg.json and the weights into `folder` (created); returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({n: t.detach().cpu().contiguous() for n, t in xc.tensors().items()}, str(folder / WEIGHTS_FILE))
    config = {"format": FORMAT, "version": VERSION, **asdict(xc.cfg)}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def read_config(folder: str | Path) -> CrosscoderConfig:
    """The config of a crosscoder folder, every field checked."""
    folder = Path(folder).expanduser()
    path = folder / CONFIG_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FeatstoreError(f"{folder} is not a crosscoder folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeatstoreError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise FeatstoreError(f"{path}: not a {FORMAT} version {VERSION} config (format and version keys)")
    known = {f.name for f in fields(CrosscoderConfig)}
    unknown = sorted(set(raw) - known - {"format", "version"})
    if unknown:
        raise FeatstoreError(f"{path}: unknown key {unknown[0]!r}; refusing rather than ignoring it")
    _check_types(path, raw)
    try:
        return CrosscoderConfig(**{k: v for k, v in raw.items() if k in known})
    except TypeError as exc:
        raise FeatstoreError(f"{path}: {exc}") from None


def _check_types(path: Path, raw: dict) -> None:
    """Sizes are positive integers, the models two names, the scales two finite positive numbers."""
    def integer(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    for key in ("d_in", "d_sae"):
        if not integer(raw.get(key)) or raw[key] < 1:
            raise FeatstoreError(f"{path}: {key} must be a positive integer (got {raw.get(key)!r})")
    for key in ("k", "seed", "training_tokens"):
        if raw.get(key) is not None and not integer(raw[key]):
            raise FeatstoreError(f"{path}: {key} must be an integer (got {raw[key]!r})")
    models, scales = raw.get("models"), raw.get("activation_scale", [1.0, 1.0])
    if not (isinstance(models, list) and len(models) == 2 and all(isinstance(m, str) for m in models)):
        raise FeatstoreError(f"{path}: models must be [parent, child], two names (got {models!r})")
    if not (isinstance(scales, list) and len(scales) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in scales)):
        raise FeatstoreError(f"{path}: activation_scale must be two positive numbers (got {scales!r})")
    if not isinstance(raw.get("hook_name"), str):
        raise FeatstoreError(f"{path}: hook_name must be a string such as blocks.0.mlp.hook_post (got {raw.get('hook_name')!r})")


def load_crosscoder(folder: str | Path, device: str | torch.device = "cpu") -> Crosscoder:
    """Load a crosscoder folder, checking every tensor's shape first."""
    from safetensors.torch import load_file

    cfg = read_config(folder)
    weights = Path(folder).expanduser() / WEIGHTS_FILE
    try:
        tensors = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise FeatstoreError(f"corrupt crosscoder weights {weights}: {str(exc).splitlines()[0]}") from exc
    expected = tensor_shapes(cfg.d_in, cfg.d_sae)
    for name in sorted(set(expected) | set(tensors)):
        shape = tuple(tensors[name].shape) if name in tensors else "missing"
        if shape != expected.get(name, "not part of a crosscoder"):
            raise FeatstoreError(f"{weights}: {name} has shape {shape}, expected {expected.get(name, 'no such tensor')}")
    xc = Crosscoder(cfg)
    with torch.no_grad():
        for name, tensor in xc.tensors().items():
            tensor.copy_(tensors[name])
    if not all(torch.isfinite(t).all() for t in xc.tensors().values()):
        raise FeatstoreError(f"{weights}: NaN or inf weights")
    return xc.to(device).eval()
