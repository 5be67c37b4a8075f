"""Sparse autoencoders (ReLU + L1, TopK) and their on-disk format, the one SAELens uses.

Weights: `sae_weights.safetensors` with W_enc (d_in, d_sae), b_enc (d_sae), W_dec (d_sae, d_in),
b_dec (d_in). Each row of W_dec is one feature's dictionary vector and is kept at unit norm.
Config: `cfg.json` with SAELens' keys (d_in, d_sae, hook_name, hook_layer, architecture
"standard"|"topk", activation_fn_str, k, l1_coefficient, dtype, model_name, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from featstore.errors import FeatstoreError

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"
ARCHITECTURES = ("relu", "topk")
# SAELens calls the plain ReLU SAE "standard".
_TO_SAELENS = {"relu": "standard", "topk": "topk"}
_FROM_SAELENS = {"standard": "relu", "relu": "relu", "topk": "topk"}


@dataclass
class SAEConfig:
    d_in: int
    d_sae: int
    architecture: str = "relu"  # relu | topk
    k: int | None = None
    l1_coefficient: float | None = None
    hook_name: str = "blocks.0.mlp.hook_post"
    hook_layer: int = 0
    model_name: str | None = None
    seed: int | None = None
    apply_b_dec_to_input: bool = True  # SAELens option; featstore-trained SAEs always centre on b_dec
    extra: dict = field(default_factory=dict)  # training metadata kept in cfg.json

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise FeatstoreError(f"unknown SAE architecture {self.architecture!r}; use one of {', '.join(ARCHITECTURES)}")
        if self.architecture == "topk" and not (self.k and 0 < self.k <= self.d_sae):
            raise FeatstoreError(f"a TopK SAE needs 0 < k <= d_sae ({self.d_sae}); got k={self.k}")


class SparseAutoencoder(nn.Module):
    """x ≈ f(x) @ W_dec + b_dec with f(x) = act((x - b_dec) @ W_enc + b_enc), act = ReLU or TopK."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Unit-norm random dictionary, encoder initialised to its transpose (a common, stable start)."""
        nn.init.kaiming_uniform_(self.W_dec)
        self.normalize_decoder()
        self.W_enc.copy_(self.W_dec.T)
        self.b_enc.zero_()
        self.b_dec.zero_()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.b_dec if self.cfg.apply_b_dec_to_input else x
        pre = centred @ self.W_enc + self.b_enc
        if self.cfg.architecture == "relu":
            return torch.relu(pre)
        values, indices = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter_(-1, indices, torch.relu(values))

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode(x)
        return self.decode(feats), feats

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        """Each feature's dictionary vector (a row of W_dec) to unit norm."""
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True)

    @torch.no_grad()
    def remove_parallel_grad(self) -> None:
        """Drop the gradient component along each dictionary vector: steps then only rotate it."""
        if self.W_dec.grad is not None:
            parallel = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
            self.W_dec.grad -= parallel * self.W_dec


def save_sae(sae: SparseAutoencoder, folder: str | Path) -> Path:
    """Write weights and cfg.json into `folder` (created); returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: p.detach().cpu().contiguous() for name, p in sae.named_parameters()}
    save_file(tensors, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(_saelens_config(sae), indent=2) + "\n")
    return folder


def _saelens_config(sae: SparseAutoencoder) -> dict:
    cfg = sae.cfg
    return {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "architecture": _TO_SAELENS[cfg.architecture],
        "activation_fn_str": cfg.architecture,
        "activation_fn_kwargs": {"k": cfg.k} if cfg.architecture == "topk" else {},
        "k": cfg.k,
        "l1_coefficient": cfg.l1_coefficient,
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "hook_name": cfg.hook_name,
        "hook_layer": cfg.hook_layer,
        "hook_head_index": None,
        "model_name": cfg.model_name,
        "dtype": "float32",
        "device": "cpu",
        "prepend_bos": False,
        "seed": cfg.seed,
        "featstore": cfg.extra,
    }


def load_sae(folder: str | Path, device: str | torch.device = "cpu") -> SparseAutoencoder:
    """Load an SAE saved by featstore or SAELens (standard ReLU or TopK), checking every shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not weights_path.is_file():
        raise FeatstoreError(f"{folder} is not an SAE folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg = _config_from_json(cfg_path)
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise FeatstoreError(f"corrupt SAE weights {weights_path}: {str(exc).splitlines()[0]}") from exc
    expected = {"W_enc": (cfg.d_in, cfg.d_sae), "b_enc": (cfg.d_sae,), "W_dec": (cfg.d_sae, cfg.d_in), "b_dec": (cfg.d_in,)}
    for name, shape in expected.items():
        if name not in tensors or tuple(tensors[name].shape) != shape:
            got = tuple(tensors[name].shape) if name in tensors else "missing"
            raise FeatstoreError(f"SAE weights {weights_path}: {name} is {got}, cfg.json says {shape}")
    sae = SparseAutoencoder(cfg)
    sae.load_state_dict({name: tensors[name].float() for name in expected})
    return sae.to(device).eval()


def load_sae_config(folder: str | Path) -> SAEConfig:
    """The SAEConfig of an SAE folder, read from its cfg.json alone (no weights)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise FeatstoreError(f"{folder} is not an SAE folder: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    return _config_from_json(path)


def _config_from_json(path: Path) -> SAEConfig:
    try:
        raw = json.loads(path.read_text())
        d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
    except (ValueError, KeyError, TypeError) as exc:
        raise FeatstoreError(f"{path} is not a valid SAE config (needs JSON with d_in and d_sae): {exc}") from exc
    kind = raw.get("architecture") or raw.get("activation_fn_str") or "standard"
    if kind not in _FROM_SAELENS:
        raise FeatstoreError(f"{path}: SAE architecture {kind!r} is not supported; featstore loads standard (ReLU) and topk")
    if raw.get("normalize_activations") not in (None, "none"):
        raise FeatstoreError(f"{path}: normalize_activations={raw['normalize_activations']!r} is not supported; fold it into the weights first")
    k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k")
    hook = raw.get("hook_name") or "blocks.0.mlp.hook_post"
    return SAEConfig(
        d_in=d_in,
        d_sae=d_sae,
        architecture=_FROM_SAELENS[kind],
        k=int(k) if k else None,
        l1_coefficient=raw.get("l1_coefficient"),
        hook_name=hook,
        hook_layer=int(raw.get("hook_layer", 0) or 0),
        model_name=raw.get("model_name"),
        seed=raw.get("seed"),
        apply_b_dec_to_input=raw.get("apply_b_dec_to_input", True) is not False,
        extra=raw.get("featstore") or {},
    )
