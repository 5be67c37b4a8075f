"""mergekit's YAML merge configs, read and written: what `featstore merge --config` runs and what it
leaves beside its output as `mergekit_config.yml` (the name mergekit gives the config it copies into
every merged folder, so `featstore model add --kind merge` reads both kinds of folder alike).

Supported: two models, `merge_method: slerp` (t toward the non-base model) or `linear` (per-model
`weight`, normalised), t or weights as a number, a gradient list, or a list of `filter` entries
(`filter: self_attn` / `mlp` ..., the first whose text occurs in the tensor name wins, one without a
filter matches all). Gradient lists are interpolated over the layers as mergekit does: layer i of n
sits at i / (n - 1), tensors outside the layers at 0. One slice covering every layer of both models.
Everything else (other methods, frankenmerges, tokenizer surgery, dtypes other than float32) is
refused by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse

CONFIG_FILE = "mergekit_config.yml"
METHODS = ("slerp", "linear")
KNOWN_KEYS = {"merge_method", "base_model", "models", "slices", "modules", "parameters", "dtype", "out_dtype",
              "tokenizer_source", "name"}

Setting = float | list  # a number, a gradient list, or a list of {filter, value} entries


@dataclass(frozen=True)
class MergePlan:
    """A two-model merge: `t` (or its per-tensor setting) is the weight toward `parents[1]`."""

    method: str
    parents: tuple[str, str]  # model references as the config names them, base (or first) model first
    t: Setting

    def t_scalar(self) -> float | None:
        """The one t of every tensor, when the config gives one (None for per-tensor lists)."""
        if self.method == "linear":
            w_a, w_b = self.t["weights"]
            numbers = all(isinstance(w, (int, float)) for w in (w_a, w_b)) and w_a + w_b
            return float(w_b / (w_a + w_b)) if numbers else None
        return float(self.t) if isinstance(self.t, (int, float)) else None

    def describe(self) -> dict:
        return {"method": self.method, "parents": list(self.parents), "t": self.t}


def load(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise FeatstoreError(f"cannot read the mergekit config {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise FeatstoreError(f"{path} is not a mergekit config (a YAML mapping with merge_method)")
    return raw


def plan(raw: dict, source: str = "the mergekit config") -> MergePlan:
    """The merge a mergekit config describes, or a one-line refusal naming what featstore cannot do."""
    raw = _without_modules(raw, source)
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise FeatstoreError(f"{source}: {', '.join(unknown)} not supported; featstore merges two models with slerp or linear")
    method = raw.get("merge_method")
    if method not in METHODS:
        raise FeatstoreError(f"{source}: merge_method {method!r} is not supported; featstore runs {' and '.join(METHODS)} "
                             "(ties, dare_ties, task_arithmetic, della, model_stock, nuslerp, passthrough ... are refused)")
    for key in ("dtype", "out_dtype"):
        if raw.get(key) not in (None, "float32"):
            raise FeatstoreError(f"{source}: {key} {raw[key]!r} is not supported; featstore merges in float32")
    if raw.get("tokenizer_source") not in (None, "base"):
        raise FeatstoreError(f"{source}: tokenizer_source {raw['tokenizer_source']!r} is not supported; the parents share one tokenizer")
    entries = _model_entries(raw, source)
    params = raw.get("parameters") or {}
    if method == "slerp":
        base = str(raw.get("base_model") or "")
        if base not in entries:
            raise FeatstoreError(f"{source}: slerp needs base_model to be one of its two models")
        if any(entries.values()):
            raise FeatstoreError(f"{source}: per-model parameters are not supported for slerp; give t under parameters")
        if "t" not in params:
            raise FeatstoreError(f"{source}: slerp needs parameters.t")
        other = next(m for m in entries if m != base)
        return MergePlan("slerp", (base, other), _setting(params["t"], "t", source))
    (first, w_first), (second, w_second) = entries.items()
    if params.get("normalize", True) is not True or set(params) - {"normalize"}:
        raise FeatstoreError(f"{source}: linear merges take per-model weight (normalised) only")
    for ref, weights in ((first, w_first), (second, w_second)):
        if set(weights) != {"weight"}:
            raise FeatstoreError(f"{source}: linear needs parameters.weight (and nothing else) for model {ref}")
    return MergePlan("linear", (first, second), {"weights": [_setting(w_first["weight"], "weight", source),
                                                             _setting(w_second["weight"], "weight", source)]})


def _without_modules(raw: dict, source: str) -> dict:
    """mergekit writes `slices` into its output's config as `modules: {default: {slices: ...}}`."""
    if "modules" not in raw:
        return raw
    modules = raw["modules"] or {}
    if set(modules) != {"default"} or set(modules["default"] or {}) - {"slices"}:
        raise FeatstoreError(f"{source}: only the default module is supported (got modules {', '.join(modules) or 'none'})")
    return {**{k: v for k, v in raw.items() if k != "modules"}, "slices": modules["default"]["slices"]}


def _model_entries(raw: dict, source: str) -> dict[str, dict]:
    """{model reference: its own parameters} in config order, from `models:` or one full `slices:` entry."""
    if raw.get("models") and raw.get("slices"):
        raise FeatstoreError(f"{source}: give models or slices, not both")
    if raw.get("slices"):
        slices = raw["slices"]
        if len(slices) != 1 or set(slices[0]) - {"sources"}:
            raise FeatstoreError(f"{source}: only one slice of whole models is supported (no frankenmerges or slice parameters)")
        sources = slices[0]["sources"]
        ranges = {tuple(s.get("layer_range") or ()) for s in sources}
        if len(ranges) != 1 or not next(iter(ranges)) or next(iter(ranges))[0] != 0:
            raise FeatstoreError(f"{source}: both sources must use the same layer_range starting at 0 (whole models)")
        items = [(str(s["model"]), s.get("parameters") or {}) for s in sources]
    else:
        items = [(str(m["model"]), m.get("parameters") or {}) for m in raw.get("models") or []]
    if len(items) != 2 or items[0][0] == items[1][0]:
        raise FeatstoreError(f"{source}: featstore merges exactly two distinct models (got {len(items)})")
    return dict(items)


def _setting(value: Any, name: str, source: str) -> Setting:
    """Check a parameter setting's shape: number, list of numbers, or list of {filter?, value}."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise FeatstoreError(f"{source}: {name} must be a number, a gradient list or a filter list (got {value!r})")
    if isinstance(value, list):
        if not value:
            raise FeatstoreError(f"{source}: {name} is an empty list")
        if all(isinstance(v, dict) for v in value):
            for entry in value:
                if set(entry) - {"filter", "value"} or "value" not in entry:
                    raise FeatstoreError(f"{source}: each {name} filter entry needs value (and optionally filter)")
                _setting(entry["value"], name, source)
        elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise FeatstoreError(f"{source}: {name} mixes numbers and filter entries")
    return value


def evaluate(setting: Setting, tensor_name: str, position: float) -> float | None:
    """mergekit's value of `setting` for a tensor at gradient `position` (None: no filter matched)."""
    if isinstance(setting, (int, float)):
        return float(setting)
    if all(isinstance(v, (int, float)) for v in setting):
        scaled = position * (len(setting) - 1)
        i0 = int(scaled)
        i1, frac = min(len(setting) - 1, i0 + 1), scaled - i0
        return (1 - frac) * setting[i0] + frac * setting[i1]
    for entry in setting:
        if entry.get("filter") in (None, "*") or entry["filter"] in tensor_name:
            return evaluate(entry["value"], tensor_name, position)
    return None


def t_schedule(merge: MergePlan, layer_names: str, n_layers: int) -> Callable[[str], float]:
    """t for each tensor name of the merged state dict; layers are `<layer_names>.<i>.` in it."""
    layer = re.compile(rf"^{re.escape(layer_names)}\.(\d+)\.")

    def position(name: str) -> float:
        match = layer.match(name)
        if match is None:
            return 0.0
        return int(match.group(1)) / (n_layers - 1) if n_layers > 1 else 1.0

    def t_of(name: str) -> float:
        if merge.method == "slerp":
            t = evaluate(merge.t, name, position(name))
            if t is None:
                raise FeatstoreError(f"no t in the mergekit config applies to tensor {name}; add an entry without a filter")
            return t
        w_a, w_b = (evaluate(w, name, position(name)) for w in merge.t["weights"])
        if w_a is None or w_b is None or w_a + w_b == 0:
            raise FeatstoreError(f"the linear weights do not give tensor {name} a weighted mean; check the filters")
        return w_b / (w_a + w_b)

    return t_of


def write_config(folder: str | Path, merge: MergePlan, paths: tuple[str, str], n_layers: int) -> Path:
    """`mergekit_config.yml` in `folder`: the merge as mergekit would run it on the parents' folders."""
    import yaml

    a, b = paths
    if merge.method == "slerp":
        config = {"merge_method": "slerp", "base_model": a,
                  "slices": [{"sources": [{"model": a, "layer_range": [0, n_layers]}, {"model": b, "layer_range": [0, n_layers]}]}],
                  "parameters": {"t": merge.t}, "dtype": "float32"}
    else:
        w_a, w_b = merge.t["weights"]
        config = {"merge_method": "linear", "models": [{"model": a, "parameters": {"weight": w_a}},
                                                        {"model": b, "parameters": {"weight": w_b}}], "dtype": "float32"}
    path = Path(folder) / CONFIG_FILE
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def linear_plan(a: str, b: str, t: float) -> MergePlan:
    """featstore's `--method linear --t t` as mergekit's weights (1 - t, t)."""
    return MergePlan("linear", (a, b), {"weights": [1 - t, t]})


def resolve_model(wh: Warehouse, ref: str) -> str:
    """The registered model a config's reference means: its name, or the folder it was registered from."""
    rows = wh.models.list().select(["name", "path"]).to_pylist()
    folder = Path(ref).expanduser()
    for row in rows:
        if ref == row["name"] or (folder.exists() and Path(row["path"]).resolve() == folder.resolve()):
            return row["name"]
    raise FeatstoreError(f"the mergekit config names model {ref!r}, which is not registered; `featstore model add` it first")


def lineage_from_folder(wh, folder: str | Path) -> dict | None:
    """register_model's lineage arguments from a merged folder's mergekit_config.yml (None: it has none)."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        return None
    merge = plan(load(path), str(path))
    parents = tuple(resolve_model(wh, ref) for ref in merge.parents)
    return {"parents": parents, "merge_method": merge.method, "merge_t": merge.t_scalar(),
            "hyperparams": {"merge": {**merge.describe(), "parents": list(parents), "config": CONFIG_FILE}}}
