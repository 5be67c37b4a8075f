"""The registry: language models, their lineage (fine-tune / merge edges), their SAEs, their tokenizers.

Registration checks what later stages rely on, so they fail here with a clear message rather than
deep inside an ingest: a model folder has a config and a loadable tokenizer, parents exist and share
its tokenizer, a merge has two parents, an SAE's input width is the width of the hook it reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, check_name

MODEL_KINDS = ("base", "finetune", "merge", "imported")
RELATIONS = ("finetune", "merge")
MLP_HIDDEN_HOOK = "blocks.{layer}.mlp.hook_post"
HOOK_LAYER = re.compile(r"^blocks\.(\d+)\.(.+)$")
# SAELens calls a plain ReLU SAE "standard".
ARCHITECTURE_ALIASES = {"standard": "relu"}
SAE_WEIGHT_SHAPES = {"W_enc": ("d_in", "d_sae"), "b_enc": ("d_sae",), "W_dec": ("d_sae", "d_in"), "b_dec": ("d_in",)}


# -- tokenizers ---------------------------------------------------------------------------------


def record_tokenizer(con: duckdb.DuckDBPyConnection, tok, name: str) -> str:
    """Insert the tokenizer and its vocabulary once per fingerprint; returns the fingerprint."""
    from featstore.tokenizer import fingerprint, vocab_rows

    fp = fingerprint(tok)
    if con.execute("SELECT 1 FROM tokenizers WHERE fingerprint = ?", [fp]).fetchone():
        return fp
    con.execute("INSERT INTO tokenizers (fingerprint, name, vocab_size) VALUES (?, ?, ?)", [fp, name, len(tok)])
    ids, raw, text = zip(*vocab_rows(tok))
    vocab = pa.table({"token_id": pa.array(ids, pa.int32()), "token": list(raw), "text": list(text)})
    con.register("vocab_batch", vocab)
    con.execute("INSERT INTO vocab SELECT ?, token_id, token, text FROM vocab_batch", [fp])
    con.unregister("vocab_batch")
    return fp


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
    """Register an HF model folder (or hub id) with its lineage edges; returns the model's row."""
    from featstore.tokenizer import load_tokenizer

    check_name("model", name)
    parents = list(parents)
    relation = _check_lineage(name, kind, parents, relation, merge_method, merge_t)
    location = str(Path(path).expanduser().resolve()) if Path(path).expanduser().exists() else str(path)
    config = model_config(location)
    if Path(location).is_dir():
        for weights in sorted(Path(location).glob("*.safetensors")):
            safetensors_tensors(weights)
    tok = load_tokenizer(location)
    architecture = (config.get("architectures") or [config.get("model_type")])[0]
    with wh.transaction() as con:
        if _exists(con, "models", "name", name) and not replace:
            raise FeatstoreError(f"model {name!r} already exists; use --replace to re-register it")
        fp = record_tokenizer(con, tok, location)
        [(descendants,)] = con.execute(
            "WITH RECURSIVE d(m) AS (SELECT ?::VARCHAR UNION SELECT l.child FROM lineage l JOIN d ON l.parent = d.m) SELECT list(m) FROM d",
            [name],
        ).fetchall()
        for parent in parents:
            if parent in descendants:
                raise FeatstoreError(
                    f"model {parent!r} descends from {name!r}; making it a parent of {name!r} would close a lineage cycle"
                )
            row = con.execute("SELECT tokenizer FROM models WHERE name = ?", [parent]).fetchone()
            if row is None:
                raise FeatstoreError(f"unknown parent model {parent!r}; register it first (see `featstore models`)")
            if row[0] != fp:
                raise FeatstoreError(
                    f"model {name!r} uses a different tokenizer from its parent {parent!r}; lineage needs one shared tokenizer"
                )
        con.execute("DELETE FROM lineage WHERE child = ?", [name])
        con.execute("DELETE FROM models WHERE name = ?", [name])
        con.execute(
            "INSERT INTO models (name, kind, path, architecture, tokenizer, train_corpus, hyperparams, metrics)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [name, kind, wh.relative(location) if Path(location).exists() else location, architecture, fp,
             train_corpus, _json(hyperparams), _json(metrics)],
        )
        for order, parent in enumerate(parents):
            con.execute(
                "INSERT INTO lineage (parent, child, relation, parent_order, merge_method, merge_t) VALUES (?, ?, ?, ?, ?, ?)",
                [parent, name, relation, order, merge_method, merge_t],
            )
    return get_model(wh, name)


def _check_lineage(
    name: str, kind: str, parents: list[str], relation: str | None, merge_method: str | None, merge_t: float | None
) -> str | None:
    """Validate kind/parents/relation together; returns the relation (defaulted from the kind)."""
    if kind not in MODEL_KINDS:
        raise FeatstoreError(f"unknown model kind {kind!r}; use one of {', '.join(MODEL_KINDS)}")
    relation = relation or (kind if kind in RELATIONS else None)
    if relation is not None and relation not in RELATIONS:
        raise FeatstoreError(f"unknown relation {relation!r}; use finetune or merge")
    if name in parents or len(set(parents)) != len(parents):
        raise FeatstoreError(f"parents of {name!r} must be distinct models other than itself")
    if kind == "base" and parents:
        raise FeatstoreError("a base model has no parents; use --kind finetune or merge")
    if relation is None and parents:
        raise FeatstoreError("give --relation finetune|merge for the parent edges")
    if relation == "finetune" and len(parents) != 1:
        raise FeatstoreError(f"a fine-tune needs exactly one --parent (got {len(parents)})")
    if relation == "merge" and len(parents) != 2:
        raise FeatstoreError(f"a merge needs exactly two --parent models, in merge order (got {len(parents)})")
    if relation != "merge" and (merge_method is not None or merge_t is not None):
        raise FeatstoreError("--merge-method and --merge-t describe a merge; use them with --relation merge")
    if merge_t is not None and not 0.0 <= merge_t <= 1.0:
        raise FeatstoreError(f"--merge-t must be between 0 and 1 (got {merge_t})")
    return relation


def update_model_metrics(wh: Warehouse, name: str, metrics: dict) -> dict:
    """Merge `metrics` into the model's metrics (new keys added, existing keys overwritten)."""
    _merge_metrics(wh, "model", name, metrics)
    return get_model(wh, name)


def get_model(wh: Warehouse, name: str) -> dict:
    """The model's row as a dict, with its parents (in merge order) under 'parents'."""
    with wh.connect(read_only=True) as con:
        model = _require(con, "model", name)
        model["path"] = wh.resolve(model["path"])
        model["parents"] = [r[0] for r in con.execute(
            "SELECT parent FROM lineage WHERE child = ? ORDER BY parent_order", [name]
        ).fetchall()]
    return model


def list_models(wh: Warehouse) -> pa.Table:
    return wh.query(
        "SELECT m.name, m.kind, m.architecture, m.tokenizer, m.train_corpus,"
        " (SELECT string_agg(parent, ',' ORDER BY parent_order) FROM lineage l WHERE l.child = m.name) AS parents,"
        " m.metrics, m.path FROM models m ORDER BY m.created_at, m.name"
    )


def list_lineage(wh: Warehouse) -> pa.Table:
    return wh.query(
        "SELECT parent, child, relation, parent_order, merge_method, merge_t FROM lineage ORDER BY child, parent_order"
    )


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
    replace: bool = False,
) -> dict:
    """Register an SAE of `model`. Its d_in must be the width of `hook_point` in the model's config.

    Replacing an SAE drops its activation partitions and correlation runs: they came from the old
    weights. A primary SAE (the one that stands for its model in persistence) demotes the others.
    """
    check_name("SAE", sae_id)
    architecture = ARCHITECTURE_ALIASES.get(architecture, architecture)
    if d_in <= 0 or d_sae <= 0:
        raise FeatstoreError(f"SAE {sae_id!r}: d_in and d_sae must be positive (got {d_in}, {d_sae})")
    if architecture == "topk" and not k:
        raise FeatstoreError(f"SAE {sae_id!r} is top-k but has no k")
    location = wh.relative(path) if path is not None else None
    model_row = get_model(wh, model)
    _check_hook(model_row, hook_point, layer, d_in)
    with wh.transaction() as con:
        stale: list[Path] = []
        if _exists(con, "saes", "id", sae_id):
            if not replace:
                raise FeatstoreError(f"SAE {sae_id!r} already exists; use --replace to re-register it")
            stale = drop_dependents(wh, con, sae=sae_id)
            con.execute("DELETE FROM saes WHERE id = ?", [sae_id])
        if is_primary:
            con.execute("UPDATE saes SET is_primary = false WHERE model = ?", [model])
        con.execute(
            "INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, l1_coeff, k, seed,"
            " train_tokens, path, is_primary, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [sae_id, model, hook_point, layer, d_in, d_sae, architecture, l1_coeff, k, seed,
             train_tokens, location, is_primary, _json(metrics)],
        )
    for file in stale:
        file.unlink(missing_ok=True)
    return get_sae(wh, sae_id)


def hook_width(config: dict, hook_point: str) -> int:
    """Width of a hook point from an HF config: the MLP hidden size for hook_post, else the model width."""
    mlp = config.get("intermediate_size") or config.get("n_inner") or (4 * config["n_embd"] if "n_embd" in config else None)
    hidden = config.get("hidden_size") or config.get("n_embd")
    width = mlp if hook_point.endswith("mlp.hook_post") else hidden
    if width is None:
        raise FeatstoreError(f"cannot tell the width of {hook_point!r} from the model's config.json")
    return int(width)


def _check_hook(model: dict, hook_point: str, layer: int, d_in: int) -> None:
    match = HOOK_LAYER.match(hook_point)
    if match is None or int(match.group(1)) != layer:
        raise FeatstoreError(
            f"hook point {hook_point!r} does not name layer {layer}; use the form {MLP_HIDDEN_HOOK.format(layer=layer)}"
        )
    config = model_config(model["path"])
    n_layers = config.get("num_hidden_layers") or config.get("n_layer")
    if n_layers is not None and not 0 <= layer < n_layers:
        raise FeatstoreError(f"model {model['name']!r} has {n_layers} layer(s); layer {layer} does not exist")
    width = hook_width(config, hook_point)
    if d_in != width:
        raise FeatstoreError(
            f"SAE d_in {d_in} does not match {hook_point} of model {model['name']!r}, which is {width} wide; "
            "register it on the model it was trained on"
        )


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


def _cfg_int(cfg: dict, key: str, cfg_file: Path) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FeatstoreError(f"{cfg_file}: {key} must be an integer (got {value!r})")
    return value


def sae_folder_config(folder: str | Path) -> dict:
    """Read an SAELens-style folder (cfg.json + sae_weights.safetensors) and check the weight shapes.

    Only the safetensors header is read (no tensors, no torch). Returns register_sae's keyword args.
    """
    folder = Path(folder).expanduser()
    cfg_file, weights = folder / "cfg.json", folder / "sae_weights.safetensors"
    if not cfg_file.is_file() or not weights.is_file():
        raise FeatstoreError(f"{folder} needs cfg.json and sae_weights.safetensors (SAELens layout)")
    try:
        cfg = json.loads(cfg_file.read_text())
    except json.JSONDecodeError as exc:
        raise FeatstoreError(f"{cfg_file} is not valid JSON ({exc.msg})") from exc
    missing = [key for key in ("d_in", "d_sae", "hook_name") if key not in cfg]
    if missing:
        raise FeatstoreError(f"{cfg_file} lacks {', '.join(missing)}; an SAE config needs d_in, d_sae and hook_name")
    dims = {"d_in": _cfg_int(cfg, "d_in", cfg_file), "d_sae": _cfg_int(cfg, "d_sae", cfg_file)}
    if not isinstance(cfg["hook_name"], str):
        raise FeatstoreError(f"{cfg_file}: hook_name must be a string such as blocks.0.mlp.hook_post (got {cfg['hook_name']!r})")
    for key in ("hook_layer", "k", "seed"):
        if cfg.get(key) is not None:
            _cfg_int(cfg, key, cfg_file)
    tensors = safetensors_tensors(weights)
    shapes = {key: tuple(meta["shape"]) for key, meta in tensors.items()}
    for key, axes in SAE_WEIGHT_SHAPES.items():
        expected = tuple(dims[a] for a in axes)
        if shapes.get(key) != expected:
            raise FeatstoreError(
                f"{weights}: {key} has shape {shapes.get(key, 'missing')}, expected {expected} from cfg.json"
            )
    _check_finite(weights, [k for k, meta in tensors.items() if meta.get("dtype") in ("F16", "F32", "F64")])
    hook = cfg["hook_name"]
    match = HOOK_LAYER.match(hook)
    layer = cfg.get("hook_layer", int(match.group(1)) if match else 0)
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    return {
        **dims,
        "hook_point": hook,
        "layer": int(layer),
        "architecture": cfg.get("architecture", "relu"),
        "l1_coeff": cfg.get("l1_coefficient", cfg.get("l1_coeff")),
        "k": k,
        "seed": cfg.get("seed"),
        "train_tokens": cfg.get("training_tokens", cfg.get("train_tokens")),
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
    _merge_metrics(wh, "SAE", sae_id, metrics)
    return get_sae(wh, sae_id)


def get_sae(wh: Warehouse, sae_id: str) -> dict:
    with wh.connect(read_only=True) as con:
        sae = _require(con, "SAE", sae_id)
    sae["path"] = wh.resolve(sae["path"])
    return sae


def primary_sae(wh: Warehouse, model: str) -> dict:
    """The SAE that stands for `model` (the last one registered as primary)."""
    get_model(wh, model)
    with wh.connect(read_only=True) as con:
        row = con.execute("SELECT id FROM saes WHERE model = ? AND is_primary", [model]).fetchone()
    if row is None:
        raise FeatstoreError(f"model {model!r} has no SAE; train one or register one with `featstore sae add`")
    return get_sae(wh, row[0])


def list_saes(wh: Warehouse) -> pa.Table:
    return wh.query(
        "SELECT id, model, hook_point, layer, d_in, d_sae, architecture, l1_coeff, k, is_primary, metrics, path"
        " FROM saes ORDER BY model, id"
    )


# -- shared helpers -----------------------------------------------------------------------------


def drop_dependents(
    wh: Warehouse, con: duckdb.DuckDBPyConnection, *, sae: str | None = None, corpus: str | None = None
) -> list[Path]:
    """Drop activation partitions and correlation runs of an SAE or a corpus being replaced.

    Runs inside the caller's transaction; returns the Parquet files to delete after it commits.
    """
    if sae is not None:
        partitions, runs, key = "sae = ?", "sae_a = ? OR sae_b = ?", [sae, sae]
    else:
        partitions, runs, key = "corpus = ?", "corpus = ?", [corpus]
    pairs = con.execute(f"SELECT sae, corpus FROM activation_partitions WHERE {partitions}", key[:1]).fetchall()
    files = [path for s, c in pairs for path in wh.drop_partition(con, s, c)]
    run_ids = f"SELECT id FROM correlation_runs WHERE {runs}"
    for table in ("correlations", "best_matches"):
        con.execute(f"DELETE FROM {table} WHERE run_id IN ({run_ids})", key)
    con.execute(f"DELETE FROM correlation_runs WHERE {runs}", key)
    return files


_KEYS = {"model": ("models", "name", "featstore models"), "SAE": ("saes", "id", "featstore saes")}


def _require(con: duckdb.DuckDBPyConnection, what: str, key: str) -> dict:
    table, column, listing = _KEYS[what]
    cursor = con.execute(f"SELECT * FROM {table} WHERE {column} = ?", [key])
    row = cursor.fetchone()
    if row is None:
        raise FeatstoreError(f"unknown {what} {key!r}; see `{listing}`")
    record = dict(zip([d[0] for d in cursor.description], row))
    for field in ("hyperparams", "metrics"):
        if field in record:
            record[field] = json.loads(record[field]) if record[field] else {}
    return record


def _merge_metrics(wh: Warehouse, what: str, key: str, metrics: dict) -> None:
    """Add or overwrite keys of a model's or SAE's metrics JSON in one transaction."""
    table, column, _ = _KEYS[what]
    with wh.transaction() as con:
        merged = {**_require(con, what, key)["metrics"], **metrics}
        con.execute(f"UPDATE {table} SET metrics = ? WHERE {column} = ?", [_json(merged), key])


def _exists(con: duckdb.DuckDBPyConnection, table: str, column: str, key: str) -> bool:
    return con.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [key]).fetchone() is not None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)
