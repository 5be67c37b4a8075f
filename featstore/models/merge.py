"""Model merging and the merge sweep.

SLERP follows mergekit's per-tensor semantics: the angle between two tensors comes from their
normalised, flattened copies, the interpolation weights apply to the unnormalised tensors, and
nearly parallel tensors (|cos θ| > 0.9995) fall back to linear interpolation. t is the weight toward
the second model: t = 0 gives the first model exactly, t = 1 the second. The paper's LuaStories is
`merge lua tinystories --t 0.58`.

The sweep (the paper's Figure 5) merges at evenly spaced t, evaluates each merge on the validation
data of both parents, and adds the parents' common base model as a baseline.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from featstore.errors import FeatstoreError
from featstore.models.layouts import decoder_layers_name
from featstore.models.mergekit import (
    MergePlan,
    linear_plan,
    resolve_model,
    t_schedule,
    write_config,
)
from featstore.models.mergekit import load as load_config
from featstore.models.mergekit import plan as mergekit_plan
from featstore.text.mixtures import mix_specs
from featstore.warehouse import Warehouse

DOT_THRESHOLD = 0.9995
EPS = 1e-8
# config.json keys that say nothing about the architecture
CONFIG_NOISE = {"_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache"}


def lerp(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((1 - t) * a.double() + t * b.double()).to(a.dtype)


def slerp(t: float, a: torch.Tensor, b: torch.Tensor, dot_threshold: float = DOT_THRESHOLD) -> torch.Tensor:
    """Spherical interpolation of two same-shape tensors, computed in float64 and cast back."""
    a64, b64 = a.double(), b.double()
    a_unit = a64.flatten() / max(a64.norm().item(), EPS)
    b_unit = b64.flatten() / max(b64.norm().item(), EPS)
    cos = torch.dot(a_unit, b_unit).clamp(-1.0, 1.0).item()
    if abs(cos) > dot_threshold:
        return lerp(t, a, b)
    theta = torch.tensor(cos, dtype=torch.float64).arccos()
    scale_a = torch.sin((1 - t) * theta) / torch.sin(theta)
    scale_b = torch.sin(t * theta) / torch.sin(theta)
    return (scale_a * a64 + scale_b * b64).to(a.dtype)


METHODS = {"slerp": slerp, "linear": lerp}  # per-tensor interpolations, by name


def merge_state_dicts(a: dict, b: dict, t: float | Callable[[str], float], method: str = "slerp") -> dict:
    """Merge two state dicts tensor by tensor; non-float tensors (buffers of ints) come from `a`.

    `t` is one weight for every tensor or a function of the tensor's name (mergekit's filters and
    gradients, `featstore.models.mergekit.t_schedule`)."""
    t_of = t if callable(t) else (lambda _name: t)
    check_method(method)
    if a.keys() != b.keys():
        raise FeatstoreError("the two models have different parameter names; only same-architecture models merge")
    combine = METHODS[method]
    merged = {}
    for key, tensor in a.items():
        if tensor.shape != b[key].shape:
            raise FeatstoreError(f"parameter {key} has shape {tuple(tensor.shape)} vs {tuple(b[key].shape)}; cannot merge")
        merged[key] = combine(check_t(t_of(key)), tensor, b[key]) if tensor.is_floating_point() else tensor.clone()
    return merged


def check_method(method: str) -> None:
    if method not in METHODS:
        raise FeatstoreError(f"unknown merge method {method!r}; use {' or '.join(METHODS)}")


def check_t(t: float) -> float:
    if not 0.0 <= t <= 1.0:
        raise FeatstoreError(f"--t must be between 0 and 1 (got {t}); it is the weight toward the second model")
    return t


def _parents(wh: Warehouse, a: str, b: str) -> tuple[dict, dict]:
    """Both models' rows, after checking they can merge: distinct, on disk, same architecture and tokenizer."""
    from featstore.models.catalog import get_model, model_config

    if a == b:
        raise FeatstoreError(f"cannot merge {a!r} with itself; name two different models")
    rows = get_model(wh, a), get_model(wh, b)
    for row in rows:
        if not Path(row["path"]).is_dir():
            raise FeatstoreError(f"model {row['name']!r} has no folder at {row['path']}; re-register or retrain it")
    configs = [{k: v for k, v in model_config(row["path"]).items() if k not in CONFIG_NOISE} for row in rows]
    if configs[0] != configs[1]:
        differ = sorted(k for k in configs[0].keys() | configs[1].keys() if configs[0].get(k) != configs[1].get(k))
        raise FeatstoreError(f"models {a!r} and {b!r} have different architectures ({', '.join(differ)}); cannot merge")
    if rows[0]["tokenizer"] != rows[1]["tokenizer"]:
        raise FeatstoreError(f"models {a!r} and {b!r} use different tokenizers; merged weights would mean nothing")
    return rows


def merge_models(
    wh: Warehouse,
    a: str,
    b: str,
    *,
    name: str,
    t: float = 0.5,
    method: str = "slerp",
    device: str | None = None,
    out_dir: str | Path | None = None,
    replace: bool = False,
    plan: MergePlan | None = None,
) -> dict:
    """Merge registered models `a` and `b`, write the HF folder, evaluate it and register the merge.

    `plan` (from a mergekit config) replaces `t` and `method`, e.g. with per-tensor t lists; the
    folder gets a `mergekit_config.yml` that mergekit runs to the same tensors."""
    from featstore.models.hf import load_model, resolve_device
    from featstore.models.lm import check_new_model, commit_model, model_folder
    from featstore.models.presets import ModelPreset
    from featstore.text.tokenizer import load_tokenizer

    plan = plan or (MergePlan("slerp", (a, b), check_t(t)) if method == "slerp" else linear_plan(a, b, check_t(t)))
    method = plan.method
    row_a, row_b = _parents(wh, a, b)
    folder = model_folder(wh, name, out_dir)
    check_new_model(wh, name, folder, replace)
    dev = resolve_device(device)
    model = load_model(row_a["path"])
    other = load_model(row_b["path"])
    layers, n_layers = decoder_layers_name(model)
    model.load_state_dict(merge_state_dicts(model.state_dict(), other.state_dict(), t_schedule(plan, layers, n_layers), method))
    del other
    tok = load_tokenizer(row_a["path"])
    stored = row_a["hyperparams"].get("preset")
    metrics = {}
    if stored:
        from featstore.models.lm import evaluate_domains

        preset = ModelPreset.from_dict(stored)
        domains = dict(preset.domains)  # every domain either parent was measured on
        for domain, spec in (row_b["hyperparams"].get("preset") or {}).get("domains", {}).items():
            domains.setdefault(domain, spec)
        preset = dataclasses.replace(preset, domains=domains)
        stored = {**stored, "domains": domains}
        metrics = evaluate_domains(model, tok, preset.domains, block_size=preset.block_size,
                                   eval_tokens=preset.eval_tokens, device=dev)
    corpora = [(row["train_corpus"], 0.5) for row in (row_a, row_b) if row["train_corpus"]]
    hyperparams = {"preset": stored, "merge": {**plan.describe(), "parents": [a, b]}}
    row = commit_model(
        wh, name, model, tok, folder, replace=replace, kind="merge", parents=(a, b), relation="merge",
        merge_method=method, merge_t=plan.t_scalar(), train_corpus=mix_specs(corpora) if corpora else None,
        hyperparams=hyperparams, metrics=metrics,
    )
    write_config(row["path"], plan, (row_a["path"], row_b["path"]), n_layers)
    return row


def merge_from_config(wh: Warehouse, config: str | Path, *, name: str, **options) -> dict:
    """Run a mergekit YAML config (see `featstore.models.mergekit`) on the registered models it names."""
    merge = mergekit_plan(load_config(config), str(config))
    a, b = (resolve_model(wh, ref) for ref in merge.parents)
    return merge_models(wh, a, b, name=name, plan=merge, **options)


def common_base(wh: Warehouse, a: str, b: str) -> str | None:
    """The model both `a` and `b` descend from directly (their shared parent), if any."""
    return wh.models.common_parent(a, b)


def merge_sweep(
    wh: Warehouse,
    a: str,
    b: str,
    *,
    steps: int = 11,
    method: str = "slerp",
    eval_tokens: int | None = None,
    device: str | None = None,
    seed: int = 0,
) -> dict:
    """Accuracy and loss of merges at `steps` evenly spaced t on both parents' validation data.

    Rows replace any earlier sweep of (a, b, method) in `merge_sweep`; the plot goes to
    `<warehouse>/plots/merge_sweep-<a>-<b>-<method>.png`. Returns the rows, the plot path and whether
    each curve is monotone in its expected direction.
    """
    from featstore.models.catalog import get_model
    from featstore.models.hf import load_model, resolve_device
    from featstore.models.lm import evaluate, validation_blocks
    from featstore.text.tokenizer import load_tokenizer

    if steps < 2:
        raise FeatstoreError(f"--steps must be at least 2 (got {steps}) to include both endpoints")
    check_method(method)
    row_a, row_b = _parents(wh, a, b)
    for row in (row_a, row_b):
        if not row["train_corpus"]:
            raise FeatstoreError(f"model {row['name']!r} has no training corpus recorded, so it has no validation data")
    stored = row_a["hyperparams"].get("preset") or {}
    block_size = stored.get("block_size", 256)
    eval_tokens = eval_tokens or stored.get("eval_tokens", 65_536)
    dev = resolve_device(device)
    tok = load_tokenizer(row_a["path"])
    eval_sets = {
        row["name"]: (row["train_corpus"], validation_blocks(row["train_corpus"], tok, block_size, eval_tokens, seed))
        for row in (row_a, row_b)
    }
    model, other = load_model(row_a["path"], dev), load_model(row_b["path"])
    state_a = {k: v.cpu() for k, v in model.state_dict().items()}
    state_b = other.state_dict()
    del other
    rows = []

    def measure(label: str, t: float | None, net) -> None:
        for eval_set, (spec, blocks) in eval_sets.items():
            result = evaluate(net, blocks, device=dev)
            rows.append({"model_a": a, "model_b": b, "method": method, "t": t, "evaluated": label,
                         "eval_set": eval_set, "corpus": spec, "n_tokens": result["tokens"],
                         "loss": result["loss"], "accuracy": result["accuracy"]})

    base = common_base(wh, a, b)
    if base is not None:
        measure(base, None, load_model(get_model(wh, base)["path"], dev))
    ts = [round(i / (steps - 1), 6) for i in range(steps)]
    for t in tqdm(ts, desc=f"merge sweep {a}~{b}", unit="merge"):
        model.load_state_dict(merge_state_dicts(state_a, state_b, t, method))
        measure("merge", t, model)
    plot = _plot(wh, a, b, method, rows)
    sweeps = wh.merge_sweeps
    sweeps.replace(a, b, method, _sweep_table(rows))
    return {"rows": rows, "plot": str(plot), "base": base, "monotone": sweeps.monotone(a, b, method)}


def _sweep_table(rows: list[dict]):
    import pyarrow as pa

    return pa.Table.from_pylist(rows)


def _plot(wh: Warehouse, a: str, b: str, method: str, rows: list[dict]) -> Path:
    """Figure 5 (`featstore.report.figures.sweep_figure`) as a PNG, written whole, then renamed."""
    from featstore.report.figures import sweep_figure

    folder = wh.root / "plots"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"merge_sweep-{a}-{b}-{method}.png"
    tmp = folder / f".{path.name}.{uuid.uuid4().hex[:8]}.png"
    try:
        sweep_figure(rows).savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
