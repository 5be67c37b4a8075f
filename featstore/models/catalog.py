"""The model catalog: language models and their lineage (fine-tune / merge edges).

Registration checks what later stages rely on, so they fail here with a clear message rather than
deep inside an ingest: a model folder has a config and a loadable tokenizer, parents exist and share
its tokenizer, a merge has two parents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.text.tokenizer import record_tokenizer
from featstore.warehouse import Warehouse, check_name
from featstore.warehouse.queries import run

MODEL_KINDS = ("base", "finetune", "merge", "imported")


@dataclass(frozen=True)
class Relation:
    """A kind of lineage edge: how a child model came from its parents."""

    name: str
    noun: str      # as in "a fine-tune needs ..."
    n_parents: int
    parents: str   # what the parents must be, for the error message


RELATIONS = {r.name: r for r in (
    Relation("finetune", "fine-tune", 1, "one --parent"),
    Relation("merge", "merge", 2, "two --parent models, in merge order"),
)}


# -- models -------------------------------------------------------------------------------------


def model_config(path: str) -> dict:
    """config.json of a local HF model folder, or of a hub id through transformers."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        config = folder / "config.json"
        if not config.is_file():
            raise FeatstoreError(f"{folder} has no config.json; give an HF-format model folder (save_pretrained)")
        return json.loads(config.read_text())
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path).to_dict()
    except (OSError, ValueError) as exc:
        raise FeatstoreError(f"cannot read model config of {path!r}: {str(exc).splitlines()[0]}; give an HF model folder or hub id") from exc


def register_model(
    wh: Warehouse,
    name: str,
    path: str | Path,
    *,
    kind: str,
    parents: tuple[str, ...] | list[str] = (),
    relation: str | None = None,
    merge_method: str | None = None,
    merge_t: float | None = None,
    train_corpus: str | None = None,
    hyperparams: dict | None = None,
    metrics: dict | None = None,
    replace: bool = False,
) -> dict:
    """Register an HF model folder (or hub id) with its lineage edges; returns the model's row.

    The model's hook points must be found in its module structure, so an unsupported layout is
    refused here rather than when an SAE is trained on it."""
    from featstore.models.layouts import check_model_hooks
    from featstore.text.tokenizer import load_tokenizer

    check_name("model", name)
    if kind == "merge" and not parents:  # a mergekit output folder says how it was merged
        from featstore.models.mergekit import lineage_from_folder

        found = lineage_from_folder(wh, Path(path).expanduser())
        if found:
            parents, merge_method, merge_t = found["parents"], found["merge_method"], found["merge_t"]
            hyperparams = {**(hyperparams or {}), **found["hyperparams"]}
    parents = list(parents)
    relation = _check_lineage(name, kind, parents, relation, merge_method, merge_t)
    location = str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists() else str(path)
    config = model_config(location)
    if Path(location).is_dir():
        for weights in sorted(Path(location).glob("*.safetensors")):
            safetensors_tensors(weights)
    tok = load_tokenizer(location)
    check_model_hooks(location)
    architecture = (config.get("architectures") or [config.get("model_type")])[0]
    with wh.transaction() as con:
        if wh.models.exists(name, con=con) and not replace:
            raise FeatstoreError(f"model {name!r} already exists; use --replace to re-register it")
        fp = record_tokenizer(wh, con, tok, location)
        [(descendants,)] = run(con, "models/descendants", name=name).fetchall()
        for parent in parents:
            if parent in descendants:
                raise FeatstoreError(
                    f"model {parent!r} descends from {name!r}; making it a parent of {name!r} would close a lineage cycle"
                )
            found = wh.models.rows_where("name = ?", [parent], select="tokenizer", con=con)
            if not found:
                raise FeatstoreError(f"unknown parent model {parent!r}; register it first (see `featstore models`)")
            if found[0]["tokenizer"] != fp:
                raise FeatstoreError(
                    f"model {name!r} uses a different tokenizer from its parent {parent!r}; lineage needs one shared tokenizer"
                )
        record = {"name": name, "kind": kind, "path": wh.relative(location) if Path(location).exists() else location,
                  "architecture": architecture, "tokenizer": fp, "train_corpus": train_corpus,
                  "hyperparams": hyperparams, "metrics": metrics}
        wh.models.replace(con, record, parents, relation, merge_method, merge_t)
    return get_model(wh, name)


def _check_lineage(
    name: str, kind: str, parents: list[str], relation: str | None, merge_method: str | None, merge_t: float | None
) -> str | None:
    """Validate kind/parents/relation together; returns the relation (defaulted from the kind)."""
    if kind not in MODEL_KINDS:
        raise FeatstoreError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
    relation = relation or (kind if kind in RELATIONS else None)
    if relation is not None and relation not in RELATIONS:
        raise FeatstoreError(f"unknown relation {relation!r}; use {' or '.join(RELATIONS)}")
    if name in parents or len(set(parents)) != len(parents):
        raise FeatstoreError(f"parents of {name!r} must be distinct models other than itself")
    if kind == "base" and parents:
        raise FeatstoreError("a base model has no parents; use --kind finetune or merge")
    if relation is None and parents:
        raise FeatstoreError(f"give --relation {'|'.join(RELATIONS)} for the parent edges")
    if relation is not None and len(parents) != RELATIONS[relation].n_parents:
        raise FeatstoreError(f"a {RELATIONS[relation].noun} needs exactly {RELATIONS[relation].parents} (got {len(parents)})")
    if relation != "merge" and (merge_method is not None or merge_t is not None):
        raise FeatstoreError("--merge-method and --merge-t describe a merge; use them with --relation merge")
    if merge_t is not None and not 0.0 <= merge_t <= 1.0:
        raise FeatstoreError(f"--merge-t must be between 0 and 1 (got {merge_t})")
    return relation


def update_model_metrics(wh: Warehouse, name: str, metrics: dict) -> dict:
    """Merge `metrics` into the model's metrics (new keys added, existing keys overwritten)."""
    wh.models.merge_metrics(name, metrics)
    return get_model(wh, name)


def get_model(wh: Warehouse, name: str) -> dict:
    """The model's row as a dict, with its parents (in merge order) under 'parents'."""
    return wh.models.get(name)


def list_models(wh: Warehouse) -> pa.Table:
    return wh.models.list()


def list_lineage(wh: Warehouse) -> pa.Table:
    return wh.models.lineage()


def safetensors_tensors(file: Path) -> dict[str, dict]:
    """The header of a safetensors file ({name: {dtype, shape, data_offsets}}), checked against the
    file's size, so a truncated or cut-short file is refused without reading its tensors."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        prefix = fh.read(8)
        n = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        try:
            if not 0 < n <= size - 8:
                raise ValueError(f"header length {n}")
            header = json.loads(fh.read(n))
            tensors = {k: v for k, v in header.items() if k != "__metadata__"}
            end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise FeatstoreError(f"{file} is not a valid safetensors file ({exc}); copy it again") from None
    if 8 + n + end != size:
        raise FeatstoreError(f"{file} is truncated or damaged: its header promises {8 + n + end:,} bytes, the file has {size:,}; copy it again")
    return tensors
