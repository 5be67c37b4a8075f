"""What every SAE architecture shares: its config, the dictionary, the SAELens file format.

x ≈ f(x) @ W_dec + b_dec with f(x) = activation((x - b_dec) @ W_enc + b_enc); each architecture
(one module beside this one) supplies `activation`, its sparsity loss and its hyperparameters.
Files: `sae_weights.safetensors` with SAELens' tensor names (W_enc (d_in, d_sae), b_enc (d_sae),
W_dec (d_sae, d_in), b_dec (d_in), plus an architecture's own, e.g. JumpReLU's `threshold`) and
`cfg.json` with SAELens' keys (d_in, d_sae, architecture, hook_name, hook_layer, model_name,
apply_b_dec_to_input, normalize_activations, ...), so SAELens loads featstore's SAEs and back.
Each row of W_dec is one feature's dictionary vector, kept at unit norm while training.
"""

from __future__ import annotations

import json
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from featstore.models.hooks import hook_name
from featstore.saes.saelens import current_layout
from featstore.saes.sparse import DENSE_ABOVE, Activity, Pairs, decode, encoded

WEIGHTS_FILE = "sae_weights.safetensors"
CONFIG_FILE = "cfg.json"


def hyperparameter(default: Any, help: str, *, kind: type | None = None, flag: str | None = None) -> Any:
    """A config field that is an architecture's hyperparameter: stored in cfg.json, offered by the CLI.

    `kind` (the option's type) defaults to the default's type; `flag` to `--<name-with-dashes>`. A
    None default means training needs a value (e.g. TopK's k).
    """
    return field(default=default, metadata={"help": help, "type": kind or type(default), "flag": flag})


def option_flag(hyper: Field) -> str:
    """The command-line flag of a hyperparameter field."""
    return hyper.metadata["flag"] or "--" + hyper.name.replace("_", "-")


@dataclass
class SAEConfig:
    """Fields every SAE has, named as in SAELens' cfg.json."""

    d_in: int
    d_sae: int
    hook_name: str = hook_name(0)
    hook_layer: int = 0
    model_name: str | None = None
    seed: int | None = None
    training_tokens: int | None = None
    apply_b_dec_to_input: bool = True  # SAELens option; featstore-trained SAEs always centre on b_dec
    dtype: str = "float32"  # SAELens computes in this dtype; featstore too, so encodings agree
    extra: dict = field(default_factory=dict)  # training metadata kept in cfg.json under "featstore"

    @classmethod
    def hyperparameters(cls) -> tuple[Field, ...]:
        """The architecture's own fields (declared with `hyperparameter`)."""
        return tuple(f for f in fields(cls) if "help" in f.metadata)

    @classmethod
    def required(cls) -> tuple[Field, ...]:
        """Hyperparameters without a default: training needs them given."""
        return tuple(f for f in cls.hyperparameters() if f.default is None)

    def saelens_fields(self) -> dict:
        """The architecture's keys in cfg.json: its hyperparameters under their own names."""
        return {f.name: getattr(self, f.name) for f in self.hyperparameters()}

    @classmethod
    def fields_from_saelens(cls, raw: dict) -> dict:
        """Hyperparameters read back from a cfg.json (None where a file does not record one)."""
        return {f.name: raw.get(f.name) for f in cls.hyperparameters()}


class SAE(nn.Module):
    """The shared dictionary and encoder; subclasses define the activation and the sparsity loss."""

    architecture: ClassVar[str]             # featstore's name, the registry key
    saelens_names: ClassVar[tuple[str, ...]]  # cfg.json "architecture" values it loads; the first is written
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    trainable: ClassVar[bool] = True  # False: loaded from SAELens and encoded only

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

    # -- the model ------------------------------------------------------------------------------

    def centred(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def pre_activation(self, x: torch.Tensor) -> torch.Tensor:
        return self.centred(x) @ self.W_enc + self.b_enc

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_activation(x))

    def decode(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.encode(x)
        return self.decode(feats), feats

    # -- training hooks -------------------------------------------------------------------------

    @torch.no_grad()
    def initialize_from_data(self, sample: torch.Tensor) -> None:
        """Called once before training, after b_dec is set, with a sample of activations (none by default)."""

    def sparsity_loss(self, pre: torch.Tensor, feats: torch.Tensor, scale: float) -> torch.Tensor:
        """The architecture's penalty on top of the reconstruction loss (none by default)."""
        return feats.new_zeros(())

    def training_loss(self, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, Activity]:
        """(loss, normalised mse, activity): squared error over `scale`, plus the sparsity loss. The dense
        step, every feature of every token: the reference the sparse step is tested against."""
        pre = self.pre_activation(x)
        feats = self.activation(pre)
        mse = (self.decode(feats) - x).pow(2).sum(dim=-1).mean() / scale
        return mse + self.sparsity_loss(pre, feats, scale), mse, Activity.of_dense(feats)

    def sparse_training_loss(self, x: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor, Activity]:
        """`training_loss` computed, after the dense encoder forward, on `training_pairs` alone (CPU;
        featstore.saes.sparse); the dense step where more than DENSE_ABOVE of the pairs are in play."""
        x = x.to(self.W_enc.dtype)
        with torch.no_grad():
            centred = self.centred(x)
            pairs, values = self.training_pairs(centred @ self.W_enc, scale)
        if pairs.density > DENSE_ABOVE:
            return self.training_loss(x, scale)
        b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
        feats, sparsity = self.pair_activation(encoded(values, pairs, centred, self.W_enc, self.b_enc, b_dec), pairs, scale)
        mse = (decode(feats, pairs, self.W_dec) + self.b_dec - x).pow(2).sum(dim=-1).mean() / scale
        return mse + sparsity, mse, Activity.of_pairs(pairs, feats)

    def training_pairs(self, product: torch.Tensor, scale: float) -> tuple[Pairs, torch.Tensor]:
        """The sparse step's (token, feature) pairs and their pre-activations (`product` + b_enc, where
        product = (x - b_dec) · W_enc): every pair whose feature can be non-zero or can pass a gradient;
        the rest are zero in the loss and its gradient."""
        raise NotImplementedError

    def pair_activation(self, pre: torch.Tensor, pairs: Pairs, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, sparsity loss) of the pairs' pre-activations: `activation` and `sparsity_loss` of the sparse step."""
        raise NotImplementedError

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

    @torch.no_grad()
    def reinitialize(self, dead: torch.Tensor, directions: torch.Tensor, enc_norm: torch.Tensor) -> list[tuple]:
        """Point dead features at unit `directions`; returns (parameter, index) pairs whose optimiser state resets."""
        self.W_dec[dead] = directions
        self.W_enc[:, dead] = directions.T * enc_norm * 0.2
        self.b_enc[dead] = 0.0
        return [(self.W_dec, (dead,)), (self.W_enc, (slice(None), dead)), (self.b_enc, (dead,))]

    # -- the SAELens format ---------------------------------------------------------------------

    @classmethod
    def tensor_shapes(cls, d_in: int, d_sae: int) -> dict[str, tuple[int, ...]]:
        """SAELens tensor names and shapes in sae_weights.safetensors."""
        return {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().contiguous() for name, p in self.named_parameters()}

    def load_saelens_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        dtype = self.W_enc.dtype
        self.load_state_dict({name: tensors[name].to(dtype) for name in self.tensor_shapes(self.cfg.d_in, self.cfg.d_sae)})

    def saelens_config(self) -> dict:
        """cfg.json in SAELens' current layout (`SAE.load_from_disk` reads it; so does featstore)."""
        cfg = self.cfg
        fields = {
            "d_in": cfg.d_in,
            "d_sae": cfg.d_sae,
            "architecture": self.saelens_names[0],
            **cfg.saelens_fields(),
            "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
            "normalize_activations": "none",
            "reshape_activations": "none",
            "dtype": cfg.dtype,
            "device": "cpu",
            "seed": cfg.seed,
            "training_tokens": cfg.training_tokens,
            "featstore": cfg.extra,
        }
        metadata = {"hook_name": cfg.hook_name, "hook_layer": cfg.hook_layer, "hook_head_index": None,
                    "model_name": cfg.model_name, "prepend_bos": False}
        return current_layout(fields, metadata)

    @classmethod
    def check_saved_tensors(cls, weights: Path, tensor: Callable[[str], torch.Tensor]) -> None:
        """Refuse saved values this architecture cannot encode (read with `tensor(name)`); none by default."""

    @classmethod
    def check_registration(cls, sae_id: str, **catalog) -> None:
        """Refuse a catalog row this architecture cannot use (TopK without k, say)."""


# -- files ------------------------------------------------------------------------------------------


def save_sae(sae: SAE, folder: str | Path) -> Path:
    """Write weights and cfg.json into `folder` (created); returns it."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(sae.saelens_tensors(), str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(sae.saelens_config(), indent=2) + "\n")
    return folder
