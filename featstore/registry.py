"""The registry: language models, their lineage (fine-tune / merge edges), their SAEs, their tokenizers.

Registration checks what later stages rely on, so they fail here with a clear message rather than
deep inside an ingest: a model folder has a config and a loadable tokenizer, parents exist and share
its tokenizer, a merge has two parents, an SAE's input width is the width of the hook it reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from featstore import hooks
from featstore.db import Database, remove_files
from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, check_name

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


# -- tokenizers ---------------------------------------------------------------------------------


def record_tokenizer(db: Database, con: duckdb.DuckDBPyConnection, tok, name: str) -> str:
    """Insert the tokenizer and its vocabulary once per fingerprint; returns the fingerprint."""
    from featstore.tokenizer import fingerprint, vocab_rows

    fp = fingerprint(tok)
    if db.tokenizers.exists(fp, con=con):
        return fp
    ids, raw, text = zip(*vocab_rows(tok))
    vocab = pa.table({"token_id": pa.array(ids, pa.int32()), "token": list(raw), "text": list(text)})
    return db.tokenizers.record(con, fp, name, vocab)


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
    from featstore.hf_layouts import check_model_hooks
    from featstore.tokenizer import load_tokenizer

    check_name("model", name)
    if kind == "merge" and not parents:  # a mergekit output folder says how it was merged
        from featstore.mergekit import lineage_from_folder

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
    db = Database(wh)
    with db.transaction() as con:
        if db.models.exists(name, con=con) and not replace:
            raise FeatstoreError(f"model {name!r} already exists; use --replace to re-register it")
        fp = record_tokenizer(db, con, tok, location)
        [(descendants,)] = con.execute(
            "WITH RECURSIVE d(m) AS (SELECT ?::VARCHAR UNION SELECT l.child FROM lineage l JOIN d ON l.parent = d.m) SELECT list(m) FROM d",
            [name],
        ).fetchall()
        for parent in parents:
            if parent in descendants:
                raise FeatstoreError(
                    f"model {parent!r} descends from {name!r}; making it a parent of {name!r} would close a lineage cycle"
                )
            found = db.models.rows_where("name = ?", [parent], select="tokenizer", con=con)
            if not found:
                raise FeatstoreError(f"unknown parent model {parent!r}; register it first (see `featstore models`)")
            if found[0]["tokenizer"] != fp:
                raise FeatstoreError(
                    f"model {name!r} uses a different tokenizer from its parent {parent!r}; lineage needs one shared tokenizer"
                )
        record = {"name": name, "kind": kind, "path": wh.relative(location) if Path(location).exists() else location,
                  "architecture": architecture, "tokenizer": fp, "train_corpus": train_corpus,
                  "hyperparams": hyperparams, "metrics": metrics}
        db.models.replace(con, record, parents, relation, merge_method, merge_t)
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
    Database(wh).models.merge_metrics(name, metrics)
    return get_model(wh, name)


def get_model(wh: Warehouse, name: str) -> dict:
    """The model's row as a dict, with its parents (in merge order) under 'parents'."""
    return Database(wh).models.get(name)


def list_models(wh: Warehouse) -> pa.Table:
    return Database(wh).models.list()


def list_lineage(wh: Warehouse) -> pa.Table:
    return Database(wh).models.lineage()


# -- SAEs ---------------------------------------------------------------------------------------


def register_sae(
    wh: Warehouse,
    sae_id: str,
    model: str,
    path: str | Path | None,
    *,
    hook_point: str,
    layer: int,
    d_in: int,
    d_sae: int,
    architecture: str,
    l1_coeff: float | None = None,
    k: int | None = None,
    seed: int | None = None,
    train_tokens: int | None = None,
    metrics: dict | None = None,
    is_primary: bool = True,
    seed_of: str | None = None,
    replace: bool = False,
) -> dict:
    """Register an SAE of `model`. Its d_in must be the width of `hook_point` in the model's config.

    Replacing an SAE drops everything computed from the old weights (`featstore.db.Saes.drop`).
    A primary SAE (the one that stands for its model in persistence) demotes the others.
    A seed replica (`seed_of`: an SAE of the same model and shape it differs from only by seed) is
    never primary.
    """
    from featstore.saes import get_architecture

    check_name("SAE", sae_id)
    cls = get_architecture(architecture)
    architecture = cls.architecture
    if d_in <= 0 or d_sae <= 0:
        raise FeatstoreError(f"SAE {sae_id!r}: d_in and d_sae must be positive (got {d_in}, {d_sae})")
    cls.check_registration(sae_id, k=k, l1_coeff=l1_coeff)
    location = wh.relative(path) if path is not None else None
    model_row = get_model(wh, model)
    check_hook(model_row, hook_point, layer, d_in)
    if seed_of is not None:
        _check_seed_of(get_sae(wh, seed_of), sae_id, model, hook_point, d_in, d_sae, architecture, seed, is_primary)
    record = {"id": sae_id, "model": model, "hook_point": hook_point, "layer": layer, "d_in": d_in, "d_sae": d_sae,
              "architecture": architecture, "l1_coeff": l1_coeff, "k": k, "seed": seed, "train_tokens": train_tokens,
              "path": location, "is_primary": is_primary, "metrics": metrics, "seed_of": seed_of}
    db = Database(wh)
    with db.transaction() as con:
        stale = db.saes.replace(con, record, replace=replace)
    remove_files(stale)
    return get_sae(wh, sae_id)


def _check_seed_of(original: dict, sae_id: str, model: str, hook_point: str, d_in: int, d_sae: int,
                   architecture: str, seed: int | None, is_primary: bool) -> None:
    """A seed replica must be comparable to its original in everything but the seed."""
    mine = {"model": model, "hook_point": hook_point, "d_in": d_in, "d_sae": d_sae, "architecture": architecture}
    differ = [k for k, v in mine.items() if original[k] != v]
    if differ:
        raise FeatstoreError(f"SAE {sae_id!r} cannot be a seed replica of {original['id']!r}: its {', '.join(differ)} differ")
    if seed is not None and seed == original["seed"]:
        raise FeatstoreError(f"SAE {sae_id!r} has the seed of {original['id']!r} ({seed}); a seed replica needs another seed")
    if is_primary:
        raise FeatstoreError(f"SAE {sae_id!r} is a seed replica of {original['id']!r}, so it cannot be primary")


def check_hook(model: dict, hook_point: str, layer: int, d_in: int) -> None:
    """An SAE of `model` reading `hook_point` at `layer` must be as wide as that hook (from the module structure)."""
    from featstore.hf_layouts import hook_width

    hooks.check_hook(model["name"], hook_point, layer, d_in, lambda: hook_width(model["path"], hook_point))


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


def sae_folder_config(folder: str | Path) -> dict:
    """Read an SAELens-style folder (cfg.json + sae_weights.safetensors), checking the weight shapes
    in the safetensors header (no tensor is read). Returns register_sae's keyword args."""
    from featstore.saes import read_folder

    weights = Path(folder).expanduser() / "sae_weights.safetensors"
    if weights.is_file():  # truncated or cut-short files first, then the config and shapes, then the values
        safetensors_tensors(weights)
    cls, cfg = read_folder(folder)
    _check_finite(weights, [k for k, meta in safetensors_tensors(weights).items() if meta.get("dtype") in ("F16", "F32", "F64")])
    return {
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "hook_point": cfg.hook_name,
        "layer": cfg.hook_layer,
        "architecture": cls.architecture,
        "l1_coeff": getattr(cfg, "l1_coefficient", None),
        "k": getattr(cfg, "k", None),
        "seed": cfg.seed,
        "train_tokens": cfg.training_tokens,
    }


def _check_finite(weights: Path, keys: list[str]) -> None:
    """NaN or inf weights would make every ingest fail later; refuse them at registration."""
    import numpy as np
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="numpy") as fh:
            bad = [key for key in keys if not np.isfinite(fh.get_tensor(key)).all()]
    except Exception as exc:  # safetensors raises its own error types
        raise FeatstoreError(f"cannot read {weights}: {exc}") from exc
    if bad:
        raise FeatstoreError(f"{weights}: {', '.join(bad)} hold NaN or infinite values; retrain or fix the SAE before registering it")


def add_sae_folder(
    wh: Warehouse, sae_id: str, model: str, folder: str | Path, *, is_primary: bool = True, replace: bool = False
) -> dict:
    """Register an existing SAE folder (SAELens naming) of a registered model."""
    return register_sae(wh, sae_id, model, folder, **sae_folder_config(folder), is_primary=is_primary, replace=replace)


def update_sae_metrics(wh: Warehouse, sae_id: str, metrics: dict) -> dict:
    """Merge `metrics` into the SAE's metrics."""
    Database(wh).saes.merge_metrics(sae_id, metrics)
    return get_sae(wh, sae_id)


def get_sae(wh: Warehouse, sae_id: str) -> dict:
    return Database(wh).saes.get(sae_id)


def primary_sae(wh: Warehouse, model: str) -> dict:
    """The SAE that stands for `model` (the last one registered as primary)."""
    get_model(wh, model)
    return Database(wh).saes.primary(model)


def list_saes(wh: Warehouse) -> pa.Table:
    return Database(wh).saes.list()
