"""Every bad input refused in one line, with the warehouse byte-identical.

A table of cases: command arguments, expected exit status, a pattern the one error line must match,
optionally a setup run on the case's copy first. The warehouse is built once per module (models m
and m2 = fine-tune of m, SAEs s1 of m and s2 of m2, corpora c1 and c2, both SAEs ingested on c1 and
correlated); each case runs on its own `cp -a` copy, and every file under it is hashed before and after.
Exit 1: featstore's own one-line errors; exit 2: click's usage errors (their `Error:` line is checked).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from helpers import invoke, run_cli, tiny_texts, tree_hashes, write_sae_folder

from featstore.warehouse import Warehouse


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, tiny_tokenizer_dir):
    from featstore.activations.ingest import ingest
    from featstore.correlation.correlate import correlate
    from featstore.models.catalog import register_model
    from featstore.saes.catalog import add_sae_folder
    from featstore.text.slices import add_corpus

    root = tmp_path_factory.mktemp("bad_inputs")
    inputs = root / "in"
    inputs.mkdir()
    wh = Warehouse(root / "wh")
    for name, seed in (("c1", 1), ("c2", 2)):
        (inputs / f"{name}.txt").write_text("\n\n".join(tiny_texts(12, seed=seed)))
        add_corpus(wh, name, str(inputs / f"{name}.txt"), tiny_tokenizer_dir)
    for name, kind, parents in (("m", "base", ()), ("m2", "finetune", ("m",))):
        shutil.copytree(tiny_model_dir, wh.root / "models" / name)
        register_model(wh, name, wh.root / "models" / name, kind=kind, parents=parents)
    for sae, model in (("s1", "m"), ("s2", "m2")):
        add_sae_folder(wh, sae, model, write_sae_folder(wh.root / "saes" / sae))
        ingest(wh, model, corpus="c1", sae_id=sae, device="cpu", progress=False)
    correlate(wh, "s1", "s2", corpus="c1", progress=False)
    make_inputs(inputs, tiny_model_dir)
    return {"wh": wh, "in": inputs, "tokenizer": tiny_tokenizer_dir}


def make_inputs(inputs: Path, model_dir: Path) -> None:
    """The bad files the cases point at."""
    (inputs / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (inputs / "latin1.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    (inputs / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (inputs / "bad.jsonl").write_text('{"text": "ok"}\n{not json\n')
    (inputs / "nokey.jsonl").write_text('{"body": "x"}\n')
    (inputs / "empty.txt").write_text("\n\n")
    (inputs / "not.parquet").write_text("hello")
    for name, change in {"noconfig": "config", "truncated": "truncate", "cutheader": "header"}.items():
        folder = inputs / f"model-{name}"
        shutil.copytree(model_dir, folder)
        weights = folder / "model.safetensors"
        if change == "config":
            (folder / "config.json").unlink()
        elif change == "truncate":
            weights.write_bytes(weights.read_bytes()[:-1000])
        else:
            weights.write_bytes(weights.read_bytes()[:20])
    sae_variants = {
        "nocfg": None, "badjson": "{nope", "nodsae": {"d_sae": None}, "strdsae": {"d_sae": "abc"},
        "floatdsae": {"d_sae": 16.5}, "inthook": {"hook_name": 3}, "narrow": {"d_in": 32, "shapes": True},
        "topk": {"architecture": "topk"}, "layer5": {"hook_name": "blocks.5.mlp.hook_post", "hook_layer": 5},
        "misnamed": {"hook_name": "blocks.0.mlp.hook_post", "hook_layer": 1},
    }
    for name, change in sae_variants.items():
        folder = write_sae_folder(inputs / f"sae-{name}", **({"d_in": 32} if isinstance(change, dict) and change.get("shapes") else {}))
        cfg = json.loads((folder / "cfg.json").read_text())
        if change is None:
            (folder / "cfg.json").unlink()
        elif isinstance(change, str):
            (folder / "cfg.json").write_text(change)
        else:
            for key, value in change.items():
                if key == "shapes":
                    continue
                if value is None:
                    cfg.pop(key)
                else:
                    cfg[key] = value
            (folder / "cfg.json").write_text(json.dumps(cfg))
    write_sae_folder(inputs / "sae-shapes", shapes={"W_dec": (8, 64)})
    nan = write_sae_folder(inputs / "sae-nan")
    _poison(nan / "sae_weights.safetensors")
    cut = write_sae_folder(inputs / "sae-cut")
    (cut / "sae_weights.safetensors").write_bytes((cut / "sae_weights.safetensors").read_bytes()[:-64])
    for case, columns in BAD_IMPORTS.items():
        pq.write_table(pa.table(columns), inputs / f"import-{case}.parquet")


def _poison(weights: Path) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(weights))
    tensors["W_enc"][0, 0] = np.nan
    save_file(tensors, str(weights))


BAD_IMPORTS = {
    "nan": dict(tok=[0, 1], feature=[1, 2], act=[1.0, float("nan")]),
    "inf": dict(tok=[0, 1], feature=[1, 2], act=[float("inf"), 1.0]),
    "nocolumn": dict(tok=[0], feature=[1]),
    "nokeys": dict(feature=[1], act=[1.0]),
    "strtok": dict(tok=["0"], feature=[1], act=[1.0]),
    "intact": dict(tok=[0], feature=[1], act=[1]),
    "bigfeature": dict(tok=[0], feature=[16], act=[1.0]),
    "negfeature": dict(tok=[0], feature=[-1], act=[1.0]),
    "tokoutside": dict(tok=[0, 10**6], feature=[1, 1], act=[1.0, 1.0]),
    "unknowndoc": dict(doc_id=[999], pos=[0], feature=[1], act=[1.0]),
    "pospast": dict(doc_id=[0], pos=[10**5], feature=[1], act=[1.0]),
    "duplicates": dict(tok=[3, 3], feature=[1, 1], act=[1.0, 2.0]),
    "nullact": dict(tok=[0, 1], feature=[1, 2], act=[1.0, None]),
    "hugetok": dict(tok=pa.array([2**63 + 5], pa.uint64()), feature=[1], act=[1.0]),
}


def _garbage(wh: Warehouse) -> None:
    wh.db_path.write_bytes(np.random.default_rng(1).bytes(wh.db_path.stat().st_size))


def _truncate(wh: Warehouse) -> None:
    wh.db_path.write_bytes(wh.db_path.read_bytes()[:100_000])


def _poison_registered(wh: Warehouse) -> None:
    _poison(wh.root / "saes" / "s2" / "sae_weights.safetensors")


def _register_m3(wh: Warehouse) -> None:
    assert run_cli(wh, "model", "add", "m3", str(wh.root / "models" / "m"), "--kind", "finetune", "--parent", "m2").exit_code == 0


def _register_s3(wh: Warehouse) -> None:
    """SAE s3 of m, with no activations."""
    assert run_cli(wh, "sae", "add", "s3", str(wh.root / "saes" / "s1"), "--model", "m", "--not-primary").exit_code == 0


def _ingest_c2(wh: Warehouse) -> None:
    """s1 ingested on c2 too: every slice of m's tokenizer has its partition."""
    assert run_cli(wh, "ingest", "m", "--corpus", "c2", "--device", "cpu").exit_code == 0


NO_CUDA = not torch.cuda.is_available()
T, M, IN = "{tokenizer}", "{wh}/models/m", "{in}"
CASES = [
    # id, args, exit code, pattern of the one error line, setup (optional)
    # -- the warehouse itself
    ("mistyped warehouse", ["--warehouse", "{in}/wherehouse", "models"], 1, r"no warehouse at .*wherehouse \(no featstore\.duckdb\)"),
    ("mistyped warehouse, sql", ["--warehouse", "{in}/wherehouse", "sql", "SELECT 1"], 1, r"no warehouse at"),
    ("catalog deleted, read", ["models"], 1, r"holds activations/, models/, saes/ but no featstore\.duckdb: the catalog is missing; nothing was changed", "delete"),
    ("catalog deleted, write", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T], 1, r"the catalog is missing; nothing was changed: restore featstore\.duckdb", "delete"),
    ("catalog garbage", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T], 1, r"is damaged \(not a DuckDB file\); nothing was changed", _garbage),
    ("catalog truncated", ["models"], 1, r"is damaged \(truncated.*\); nothing was changed", _truncate),
    # -- corpus add
    ("corpus bad name", ["corpus", "add", "bad name!", "--source", f"{IN}/c1.txt", "--tokenizer", T], 1, r"invalid corpus name 'bad name!'"),
    ("corpus exists", ["corpus", "add", "c1", "--source", f"{IN}/c1.txt", "--tokenizer", T], 1, r"corpus 'c1' already exists; use --replace"),
    ("max-tokens 0", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T, "--max-tokens", "0"], 1, r"--max-tokens must be between 1 and 2\^32"),
    ("max-tokens negative", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T, "--max-tokens", "-5"], 1, r"--max-tokens must be between 1 and 2\^32, .*got -5"),
    ("max-tokens overflow", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T, "--max-tokens", "99999999999999999999999"], 1, r"--max-tokens must be between"),
    ("max-docs overflow", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T, "--max-docs", "99999999999999999999999"], 1, r"--max-docs must be between"),
    ("max-docs overflow with part", ["corpus", "add", "x", "--source", "generated:lua", "--part", "validation", "--tokenizer", T, "--max-docs", "99999999999999999999999"], 1, r"--max-docs must be between"),
    ("latin-1 txt", ["corpus", "add", "x", "--source", f"{IN}/latin1.txt", "--tokenizer", T], 1, r"latin1\.txt line 1 is not valid UTF-8 \(byte 3: invalid continuation byte\); featstore reads text as UTF-8"),
    ("latin-1 jsonl", ["corpus", "add", "x", "--source", f"{IN}/latin1.jsonl", "--tokenizer", T], 1, r"latin1\.jsonl line 2 is not valid UTF-8"),
    ("binary txt", ["corpus", "add", "x", "--source", f"{IN}/binary.txt", "--tokenizer", T], 1, r"binary\.txt holds NUL bytes: it is binary"),
    ("bad jsonl", ["corpus", "add", "x", "--source", f"{IN}/bad.jsonl", "--tokenizer", T], 1, r"bad\.jsonl:2 is not valid JSON"),
    ("jsonl without key", ["corpus", "add", "x", "--source", f"{IN}/nokey.jsonl", "--tokenizer", T], 1, r"no .*text"),
    ("empty source", ["corpus", "add", "x", "--source", f"{IN}/empty.txt", "--tokenizer", T], 1, r"gave no tokens"),
    ("real corpora folder exists", ["corpus", "debian", "--out", IN], 1, r"in already exists; pass --replace to rebuild it"),
    ("missing source", ["corpus", "add", "x", "--source", f"{IN}/nothere.txt", "--tokenizer", T], 1, r"nothere\.txt"),
    ("glob matches nothing", ["corpus", "add", "x", "--source", f"{IN}/*.nothing", "--tokenizer", T], 1, r"no files match"),
    ("unknown generator", ["corpus", "add", "x", "--source", "generated:nosuch", "--tokenizer", T], 1, r"unknown generator 'nosuch'"),
    ("generator option", ["corpus", "add", "x", "--source", "generated:lua?pages=3", "--tokenizer", T], 1, r"unknown option\(s\) pages"),
    ("generator docs not int", ["corpus", "add", "x", "--source", "generated:lua?docs=x", "--tokenizer", T], 1, r"docs and seed must be integers"),
    ("spec empty part", ["corpus", "add", "x", "--source", "generated:lua=0.5+", "--part", "train", "--tokenizer", T], 1, r"has an empty part"),
    ("spec zero weight", ["corpus", "add", "x", "--source", "generated:lua=0+generated:stories=1", "--part", "train", "--tokenizer", T], 1, r"weight of 'generated:lua' must be > 0"),
    ("part choice", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", T, "--part", "test"], 2, r"Invalid value for '--part'"),
    ("missing tokenizer", ["corpus", "add", "x", "--source", f"{IN}/c1.txt", "--tokenizer", f"{IN}/notok"], 1, r"tokenizer"),
    # -- model add
    ("model no config", ["model", "add", "x", f"{IN}/model-noconfig", "--kind", "base"], 1, r"has no config\.json"),
    ("model truncated weights", ["model", "add", "x", f"{IN}/model-truncated", "--kind", "base"], 1, r"model\.safetensors is truncated or damaged: its header promises [\d,]+ bytes, the file has [\d,]+"),
    ("model cut header", ["model", "add", "x", f"{IN}/model-cutheader", "--kind", "base"], 1, r"model\.safetensors is not a valid safetensors file"),
    ("model bad name", ["model", "add", "a/b", M, "--kind", "base"], 1, r"invalid model name 'a/b'"),
    ("model exists", ["model", "add", "m", M, "--kind", "base"], 1, r"model 'm' already exists; use --replace"),
    ("unknown parent", ["model", "add", "x", M, "--kind", "finetune", "--parent", "nosuch"], 1, r"unknown parent model 'nosuch'"),
    ("base with parent", ["model", "add", "x", M, "--kind", "base", "--parent", "m"], 1, r"a base model has no parents"),
    ("finetune no parent", ["model", "add", "x", M, "--kind", "finetune"], 1, r"a fine-tune needs exactly one --parent \(got 0\)"),
    ("merge one parent", ["model", "add", "x", M, "--kind", "merge", "--parent", "m"], 1, r"a merge needs exactly two --parent"),
    ("merge-t out of range", ["model", "add", "x", M, "--kind", "merge", "--parent", "m", "--parent", "m2", "--merge-t", "2"], 1, r"--merge-t must be between 0 and 1"),
    ("merge method on finetune", ["model", "add", "x", M, "--kind", "finetune", "--parent", "m", "--merge-method", "slerp"], 1, r"--merge-method and --merge-t describe a merge"),
    ("self parent", ["model", "add", "x", M, "--kind", "merge", "--parent", "x", "--parent", "m"], 1, r"must be distinct models other than itself"),
    ("imported with parent, no relation", ["model", "add", "x", M, "--kind", "imported", "--parent", "m"], 1, r"give --relation finetune\|merge"),
    ("kind choice", ["model", "add", "x", M, "--kind", "other"], 2, r"Invalid value for '--kind'"),
    ("cycle: parent is a descendant", ["model", "add", "m", M, "--replace", "--kind", "finetune", "--parent", "m2"], 1, r"model 'm2' descends from 'm'; making it a parent of 'm' would close a lineage cycle"),
    ("cycle: grandchild", ["model", "add", "m", M, "--replace", "--kind", "finetune", "--parent", "m3"], 1, r"model 'm3' descends from 'm'", _register_m3),
    ("cycle: merge parent", ["model", "add", "m", M, "--replace", "--kind", "merge", "--parent", "m2", "--parent", "m3"], 1, r"descends from 'm'", _register_m3),
    # -- sae add
    ("sae folder missing", ["sae", "add", "x", f"{IN}/nothere", "--model", "m"], 2, r"Directory .* does not exist"),
    ("sae no cfg", ["sae", "add", "x", f"{IN}/sae-nocfg", "--model", "m"], 1, r"needs cfg\.json and sae_weights\.safetensors"),
    ("sae cfg not json", ["sae", "add", "x", f"{IN}/sae-badjson", "--model", "m"], 1, r"cfg\.json is not valid JSON"),
    ("sae cfg lacks d_sae", ["sae", "add", "x", f"{IN}/sae-nodsae", "--model", "m"], 1, r"lacks d_sae"),
    ("sae d_sae text", ["sae", "add", "x", f"{IN}/sae-strdsae", "--model", "m"], 1, r"d_sae must be an integer \(got 'abc'\)"),
    ("sae d_sae float", ["sae", "add", "x", f"{IN}/sae-floatdsae", "--model", "m"], 1, r"d_sae must be an integer \(got 16\.5\)"),
    ("sae hook_name number", ["sae", "add", "x", f"{IN}/sae-inthook", "--model", "m"], 1, r"hook_name must be a string"),
    ("sae NaN weights", ["sae", "add", "x", f"{IN}/sae-nan", "--model", "m"], 1, r"W_enc hold NaN or infinite values"),
    ("sae truncated weights", ["sae", "add", "x", f"{IN}/sae-cut", "--model", "m"], 1, r"sae_weights\.safetensors is truncated or damaged"),
    ("sae shapes", ["sae", "add", "x", f"{IN}/sae-shapes", "--model", "m"], 1, r"W_dec has shape \(8, 64\), expected \(16, 64\)"),
    ("sae width", ["sae", "add", "x", f"{IN}/sae-narrow", "--model", "m"], 1, r"SAE d_in 32 does not match blocks\.0\.mlp\.hook_post of model 'm', which is 64 wide"),
    ("sae topk without k", ["sae", "add", "x", f"{IN}/sae-topk", "--model", "m"], 1, r"a TopK SAE needs 0 < k <= d_sae \(16\); got k=None"),
    ("sae layer missing", ["sae", "add", "x", f"{IN}/sae-layer5", "--model", "m"], 1, r"layer 5 does not exist.*1 layer\(s\)"),
    ("sae hook misnamed", ["sae", "add", "x", f"{IN}/sae-misnamed", "--model", "m"], 1, r"does not name layer 1"),
    ("sae unknown model", ["sae", "add", "x", "{wh}/saes/s1", "--model", "nosuch"], 1, r"unknown model 'nosuch'"),
    ("sae exists", ["sae", "add", "s1", "{wh}/saes/s1", "--model", "m"], 1, r"SAE 's1' already exists; use --replace"),
    ("sae bad id", ["sae", "add", "-x", "{wh}/saes/s1", "--model", "m"], 2, r"No such option"),
    ("sae bad id chars", ["sae", "add", "a b", "{wh}/saes/s1", "--model", "m"], 1, r"invalid SAE name 'a b'"),
    # -- import-activations
    *[(f"import {case}", ["import-activations", "--sae", "s1", "--corpus", "c1", f"{IN}/import-{case}.parquet"], 1, pattern)
      for case, pattern in {
          "nan": "NaN or infinite act", "inf": "NaN or infinite act", "nocolumn": r"lacks column\(s\) act",
          "nokeys": r"lacks column\(s\) doc_id, pos", "strtok": "column tok has type string, expected an integer",
          "intact": "column act has type int64, expected a float", "bigfeature": r"feature outside 0\.\.15",
          "negfeature": r"feature outside 0\.\.15", "tokoutside": "outside corpus 'c1'", "unknowndoc": "unknown doc_id or pos",
          "pospast": "unknown doc_id or pos", "duplicates": "appear more than once", "nullact": "null values",
          "hugetok": "cannot read .*import-hugetok",
      }.items()],
    ("import not parquet", ["import-activations", "--sae", "s1", "--corpus", "c1", f"{IN}/not.parquet"], 1, r"is not a readable Parquet file"),
    ("import missing file", ["import-activations", "--sae", "s1", "--corpus", "c1", f"{IN}/nothere.parquet"], 1, r"nothere\.parquet does not exist"),
    ("import unknown sae", ["import-activations", "--sae", "nosuch", "--corpus", "c1", f"{IN}/import-nan.parquet"], 1, r"unknown SAE 'nosuch'; see `featstore saes`"),
    ("import unknown corpus", ["import-activations", "--sae", "s1", "--corpus", "nosuch", f"{IN}/import-nan.parquet"], 1, r"unknown corpus 'nosuch'"),
    # -- ingest
    ("ingest unknown model", ["ingest", "nosuch"], 1, r"unknown model 'nosuch'"),
    ("ingest unknown sae", ["ingest", "m", "--sae", "nosuch", "--corpus", "c1"], 1, r"unknown SAE 'nosuch'"),
    ("ingest sae of another model", ["ingest", "m", "--sae", "s2", "--corpus", "c1"], 1, r"SAE 's2' was trained on model 'm2', not 'm'"),
    ("ingest layer", ["ingest", "m", "--corpus", "c1", "--layer", "3"], 1, r"reads layer 0, not layer 3"),
    ("ingest context 0", ["ingest", "m", "--corpus", "c1", "--context", "0"], 1, r"--context and --batch-size must be positive"),
    ("ingest batch negative", ["ingest", "m", "--corpus", "c1", "--batch-size", "-1"], 1, r"--context and --batch-size must be positive"),
    ("ingest device gpu0", ["ingest", "m", "--corpus", "c1", "--device", "gpu0"], 1, r"unknown device 'gpu0'; use cpu, cuda or cuda:N"),
    ("ingest unknown corpus", ["ingest", "m", "--corpus", "nosuch"], 1, r"unknown corpus 'nosuch'"),
    ("ingest default slices, batch 0", ["ingest", "m", "--batch-size", "0"], 1, r"--context and --batch-size must be positive"),
    ("ingest all stored, device gpu0", ["ingest", "m", "--device", "gpu0"], 1, r"unknown device 'gpu0'", _ingest_c2),
    ("ingest NaN weights", ["ingest", "m2", "--corpus", "c1", "--device", "cpu"], 1, r"NaN/inf activations from the model or SAE; nothing was written", _poison_registered),
    # -- correlate, persistence
    ("correlate unknown sae", ["correlate", "s1", "nosuch", "--corpus", "c1"], 1, r"unknown SAE 'nosuch'"),
    ("correlate unknown corpus", ["correlate", "s1", "s2", "--corpus", "nosuch"], 1, r"unknown corpus 'nosuch'"),
    ("correlate stat", ["correlate", "s1", "s2", "--stat", "pearson"], 2, r"Invalid value for '--stat'"),
    ("correlate floor 2", ["correlate", "s1", "s2", "--floor", "2"], 1, r"the floor must be a correlation between -1 and 1 \(got 2\.0\)"),
    ("correlate floor nan", ["correlate", "s1", "s2", "--floor", "nan"], 1, r"the floor must be a correlation between -1 and 1"),
    ("correlate floor -1 all_tokens", ["correlate", "s1", "s2", "--floor", "-1"], 1, r"all_tokens needs --floor > 0 \(got -1\.0\): pairs that never co-fire"),
    ("correlate floor 0 all_tokens", ["correlate", "s1", "s2", "--floor", "0"], 1, r"all_tokens needs --floor > 0"),
    ("correlate min-cofiring 1", ["correlate", "s1", "s2", "--stat", "cofiring", "--min-cofiring", "1"], 1, r"--min-cofiring must be at least 2"),
    ("correlate no partitions", ["correlate", "s1", "s2", "--corpus", "c2"], 1, r"no activations for SAE 's1' on corpus 'c2'"),
    ("correlate engine", ["correlate", "s1", "s2", "--engine", "gpu"], 2, r"Invalid value for '--engine'"),
    ("correlate all stored, threads 0", ["correlate", "s1", "s2", "--threads", "0"], 1, r"--threads must be at least 1 \(got 0\)"),
    ("correlate no common slice", ["correlate", "s1", "s3"], 1,
     r"SAEs 's1' and 's3' have activations on no common corpus slice; ingest both on one with `featstore ingest`", _register_s3),
    ("correlate corpus and all corpora", ["correlate", "s1", "s2", "--all-corpora", "--corpus", "c1"], 2,
     r"give --corpus or --all-corpora, not both"),
    ("correlate threads 0", ["correlate", "s1", "s2", "--corpus", "c1", "--threads", "0"], 1, r"--threads must be at least 1 \(got 0\)"),
    ("correlate torch threads -2", ["correlate", "s1", "s2", "--engine", "torch", "--threads", "-2"], 1, r"--threads must be at least 1"),
    ("correlate numba no partitions", ["correlate", "s1", "s2", "--corpus", "c2", "--engine", "numba"], 1,
     r"no activations for SAE 's1' on corpus 'c2'"),
    ("correlate numba spark master", ["correlate", "s1", "s2", "--engine", "numba", "--spark-master", "local[2]"], 1,
     r"--spark-master is for --engine spark \(this run uses --engine numba\)"),
    ("correlate spark master without spark", ["correlate", "s1", "s2", "--spark-master", "local[2]"], 1,
     r"--spark-master is for --engine spark \(this run uses --engine auto\)"),
    ("ingest shard past N", ["ingest", "m", "--corpus", "c1", "--shard", "3/2"], 1, r"--shard 3/2: I must be in 0\.\.N-1"),
    ("ingest shard text", ["ingest", "m", "--corpus", "c1", "--shard", "x"], 1, r"--shard takes I/N, e.g\. 0/4 \(got 'x'\)"),
    ("ingest device list with a bad one", ["ingest", "m", "--corpus", "c1", "--device", "cpu,gpu0"], 1,
     r"unknown device 'gpu0'; use cpu, cuda or cuda:N"),
    ("ingest device list with shard", ["ingest", "m", "--corpus", "c1", "--device", "cpu,cpu", "--shard", "0/2"], 1,
     r"--shard runs one share on one device; give --device one device, or drop --shard"),
    ("ingest act dtype", ["ingest", "m", "--corpus", "c1", "--act-dtype", "int8"], 2, r"Invalid value for '--act-dtype'"),
    ("ingest corpus and all corpora", ["ingest", "m", "--all-corpora", "--corpus", "c1"], 2, r"give --corpus or --all-corpora, not both"),
    # -- match, transfer, export-features
    ("match unknown sae", ["match", "s1", "nosuch"], 1, r"unknown SAE 'nosuch'"),
    ("match itself", ["match", "s1", "s1"], 1, r"SAE 's1' would be matched with itself"),
    ("match method", ["match", "s1", "s2", "--method", "bogus"], 1, r"unknown match method 'bogus'; use one of decoder_cosine"),
    ("match top-k 0", ["match", "s1", "s2", "--top-k", "0"], 1, r"top_k must be at least 1 \(got 0\)"),
    ("match corpus without activations", ["match", "s1", "s2", "--corpus", "c2", "--method", "jaccard"], 1,
     r"need activations on corpus 'c2'; run `featstore ingest` first"),
    ("match device gpu0", ["match", "s1", "s2", "--device", "gpu0"], 1, r"unknown device 'gpu0'; use cpu, cuda or cuda:N"),
    ("match jaccard, no common slice", ["match", "s1", "s3", "--method", "jaccard"], 1,
     r"SAEs 's1' and 's3' have activations on no common corpus slice, which jaccard reads", _register_s3),
    ("match corpus and all corpora", ["match", "s1", "s2", "--all-corpora", "--corpus", "c1"], 2,
     r"give --corpus or --all-corpora, not both"),
    ("transfer no run", ["transfer", "s1", "s2", "--stat", "cofiring"], 1, r"no cofiring correlation run between 's1' and 's2'"),
    ("transfer threshold", ["transfer", "s1", "s2", "--threshold", "3"], 1, r"no feature of 's1' matches one of 's2' at r >= 3\.0"),
    ("export-features unknown sae", ["export-features", "nosuch", "--format", "neuronpedia"], 1, r"unknown SAE 'nosuch'"),
    ("export-features format", ["export-features", "s1", "--format", "bogus"], 2, r"Invalid value for '--format'"),
    ("export-features corpus", ["export-features", "s1", "--format", "delphi", "--corpus", "c2"], 1, r"no activations for SAE 's1' on corpus 'c2'"),
    ("export-features feature list", ["export-features", "s1", "--format", "neuronpedia", "--features", "a,b"], 2,
     r"is not a comma-separated list of feature numbers"),
    ("export-features feature outside", ["export-features", "s1", "--format", "neuronpedia", "--features", "3,999"], 1,
     r"feature 999 is outside 0\.\.15: SAE 's1' has 16 features"),
    ("export-features context 0", ["export-features", "s1", "--format", "saedashboard", "--context", "0"], 1, r"--context must be positive \(got 0\)"),
    ("export-features delphi context 100", ["export-features", "s1", "--format", "delphi", "--context", "100"], 1,
     r"--context 100 does not fit delphi, which cuts each cached window into 32-token examples"),
    ("export-features neuronpedia-api context 2048", ["export-features", "s1", "--format", "neuronpedia-api", "--context", "2048"], 1,
     r"--context 2048 is longer than the 1024 tokens Neuronpedia's upload route"),
    ("persistence threshold 1.5", ["persistence", "--threshold", "1.5"], 1, r"the threshold must be a score between -1 and 1 \(got 1\.5\)"),
    ("persistence threshold -2", ["persistence", "--threshold", "-2"], 1, r"between -1 and 1 \(got -2\.0\)"),
    ("persistence stat", ["persistence", "--stat", "x"], 2, r"Invalid value for '--stat'"),
    # -- sql, export
    ("sql empty", ["sql", "  "], 1, r"empty SQL"),
    ("sql copy", ["sql", "COPY (SELECT 1) TO 'x.csv'"], 1, r"COPY statements are refused: this connection is read-only and writes no files"),
    ("sql copy over a partition", ["sql", "COPY (SELECT 1 AS tok) TO '{wh}/activations/x.parquet' (USE_TMP_FILE false)"], 1, r"COPY statements are refused"),
    ("sql insert", ["sql", "INSERT INTO models (name, kind, path) VALUES ('x', 'base', 'x')"], 1, r"INSERT statements are refused"),
    ("sql attach", ["sql", "ATTACH '{in}/x.duckdb'"], 1, r"ATTACH statements are refused"),
    ("sql read outside", ["sql", "SELECT * FROM read_csv('{in}/c1.txt')"], 1, r"Permission Error: .*c1\.txt.*; this connection is read-only and writes no files"),
    ("sql syntax", ["sql", "SELEC 1"], 1, r"query failed: Parser Error"),
    ("sql unknown table", ["sql", "SELECT * FROM nosuch"], 1, r"query failed: Catalog Error"),
    ("sql persistence macro 1.5", ["sql", "SELECT * FROM persistence(threshold := 1.5)"], 1, r"persistence: threshold must be a correlation between -1 and 1, got 1\.5"),
    ("sql persistence macro -2", ["sql", "SELECT count(*) FROM persistence(threshold := -2)"], 1, r"threshold must be a correlation between -1 and 1, got -2"),
    ("sql persistence_summary macro", ["sql", "SELECT * FROM persistence_summary(threshold := 3)"], 1, r"threshold must be a correlation"),
    ("sql feature_families macro", ["sql", "SELECT count(*) FROM feature_families(threshold := 9)"], 1, r"threshold must be a correlation"),
    ("export unknown", ["export", "nosuch"], 1, r"no table or view named 'nosuch'"),
    ("export injection", ["export", "models\" TO 'x.csv' --"], 1, r"no table or view named"),
    ("export format", ["export", "models", "--format", "xlsx"], 2, r"Invalid value for '--format'"),
    ("export out is a file", ["export", "models", "--out", "{in}/c1.txt"], 2, r"Directory '.*c1\.txt' is a file"),
    ("init catalog not postgres", ["init", "--catalog", "mysql://u@h/db"], 1, r"--catalog 'mysql://u@h/db' is not a PostgreSQL URL"),
    ("init catalog over the file catalog", ["init", "--catalog", "postgresql://u:secret@127.0.0.1:1/db"], 1,
     r"already holds the file catalog featstore\.duckdb; make the lake warehouse in a new folder"),
    ("init data path without catalog", ["init", "--data-path", "{in}/lake"], 1, r"--data-path is for a DuckLake catalog"),
    ("init catalog without the extension", ["--warehouse", "{in}/newlake", "init", "--catalog", "postgresql://u@127.0.0.1:1/db"], 1,
     r"duckdb_extension_ducklake is not installed; install the lake backend in its own environment"),
    ("maintain older-than negative", ["maintain", "--older-than", "-1"], 2, r"Invalid value for '--older-than'"),
    # -- SAE training and evaluation
    ("sae train tokens -5", ["sae", "train", "m", "--tokens", "-5"], 1, r"--tokens must be positive \(got -5\)"),
    ("sae train tokens 0", ["sae", "train", "m", "--tokens", "0"], 1, r"--tokens must be positive \(got 0\)"),
    ("sae train expansion 0", ["sae", "train", "m", "--expansion", "0"], 1, r"--expansion must be positive"),
    ("sae train lr negative", ["sae", "train", "m", "--lr", "-1"], 1, r"--lr must be positive"),
    ("sae train l1 negative", ["sae", "train", "m", "--l1", "-0.1"], 1, r"--l1 must be zero or more"),
    ("sae train k 0", ["sae", "train", "m", "--arch", "topk", "--k", "0"], 1, r"--k must be positive"),
    ("sae train topk without k", ["sae", "train", "m", "--arch", "topk"], 1, r"a topk SAE needs --k \(active features per token\)"),
    ("sae train batch 0", ["sae", "train", "m", "--batch-blocks", "0"], 1, r"--batch-blocks must be positive"),
    ("sae train layer negative", ["sae", "train", "m", "--layer", "-1"], 1, r"--layer must be zero or more"),
    ("sae train device gpu0", ["sae", "train", "m", "--tokens", "100", "--device", "gpu0"], 1, r"unknown device 'gpu0'"),
    ("sae train unknown model", ["sae", "train", "nosuch"], 1, r"unknown model 'nosuch'"),
    ("sae train preset", ["sae", "train", "m", "--preset", "huge"], 2, r"Invalid value for '--preset'"),
    ("sae train init-from unknown", ["sae", "train", "m2", "--init-from", "nosuch"], 1, r"unknown SAE 'nosuch'"),
    ("sae train init-from and same-init-as", ["sae", "train", "m2", "--init-from", "s1", "--same-init-as", "s1"], 1,
     r"--same-init-as starts from another SAE's initial weights, --init-from from its trained ones; give one"),
    ("sae train init-from and seed-of", ["sae", "train", "m2", "--seed-of", "s2", "--init-from", "s1"], 1,
     r"--seed-of takes every setting from that SAE; drop --init-from"),
    ("sae eval unknown", ["sae", "eval", "nosuch"], 1, r"unknown SAE 'nosuch'"),
    ("sae eval device gpu0", ["sae", "eval", "s1", "--device", "gpu0"], 1, r"unknown device 'gpu0'"),
    ("sae eval saebench into a folder", ["sae", "eval", "s1", "--saebench", "{in}"], 2, r"Invalid value for '--saebench'.*is a directory"),
    # -- crosscoders
    ("crosscoder unknown model", ["crosscoder", "train", "m", "nosuch"], 1, r"unknown model 'nosuch'"),
    ("crosscoder one model twice", ["crosscoder", "train", "m", "m"], 1, r"a crosscoder reads two different models; got 'm' twice"),
    ("crosscoder k 0", ["crosscoder", "train", "m", "m2", "--k", "0"], 1, r"crosscoder k must be at least 1 \(got 0\)"),
    ("crosscoder k above d_sae", ["crosscoder", "train", "m", "m2", "--k", "100000", "--expansion", "1"], 1, r"a BatchTopK crosscoder needs 0 < k <= d_sae \(64\); got k=100000"),
    ("crosscoder text under one batch", ["crosscoder", "train", "m", "m2", "--corpus", "c1", "--device", "cpu"], 1,
     r"the training text holds [\d,]+ tokens, fewer than one batch \(512\)"),
    ("crosscoder source and corpus", ["crosscoder", "train", "m", "m2", "--source", "generated:lua", "--corpus", "c1"], 1,
     r"give the training text as --source SPEC or --corpus NAME, not both"),
    ("crosscoder lr negative", ["crosscoder", "train", "m", "m2", "--lr", "-1"], 1, r"lr and l1_coefficient must be positive"),
    ("crosscoder sparsity", ["crosscoder", "train", "m", "m2", "--sparsity", "l2"], 2, r"Invalid value for '--sparsity'"),
    ("crosscoder unknown corpus", ["crosscoder", "train", "m", "m2", "--corpus", "nosuch", "--device", "cpu"], 1,
     r"unknown corpus 'nosuch'"),
    ("crosscoder ingest on unknown corpus", ["crosscoder", "train", "m", "m2", "--ingest", "nosuch"], 1, r"unknown corpus 'nosuch'"),
    ("crosscoder device gpu0", ["crosscoder", "train", "m", "m2", "--device", "gpu0"], 1, r"unknown device 'gpu0'"),
    ("crosscoder ingest unknown", ["crosscoder", "ingest", "nosuch", "--corpus", "c1"], 1, r"unknown crosscoder 'nosuch'"),
    ("crosscoder ingest without corpus", ["crosscoder", "ingest", "nosuch"], 2, r"Missing option '--corpus'"),
    # -- causal checks
    ("causal unknown SAE", ["causal", "s1", "nosuch", "--corpus", "c1"], 1, r"unknown SAE 'nosuch'"),
    ("causal one SAE twice", ["causal", "s1", "s1", "--corpus", "c1"], 1, r"SAE 's1' would be checked against itself"),
    ("causal unknown corpus", ["causal", "s1", "s2", "--corpus", "nosuch"], 1, r"unknown corpus 'nosuch'"),
    ("causal without corpus", ["causal", "s1", "s2"], 2, r"Missing option '--corpus'"),
    ("causal nothing to check", ["causal", "s1", "s2", "--corpus", "c1", "--top", "0", "--sample", "0"], 1,
     r"causal top and sample are both 0: no pair would be checked"),
    ("causal top negative", ["causal", "s1", "s2", "--corpus", "c1", "--top", "-3"], 1, r"causal top must be at least 0 \(got -3\)"),
    ("causal block-len 1", ["causal", "s1", "s2", "--corpus", "c1", "--block-len", "1"], 1, r"a loss change needs a next token"),
    ("causal unknown method", ["causal", "s1", "s2", "--corpus", "c1", "--method", "pearson"], 1,
     r"causal method 'pearson' is not a match method to check; use one of all_tokens"),
    ("causal no matches there", ["causal", "s1", "s2", "--corpus", "c2"], 1,
     r"SAEs 's1' and 's2' have no all_tokens matches on corpus 'c2' to check; run `featstore correlate s1 s2 --corpus c2 --stat all_tokens` first"),
    ("match causal", ["match", "s1", "s2", "--method", "causal"], 1,
     r"unknown match method 'causal' \(the causal check runs with `featstore causal`\); use one of"),
    ("causal device gpu0", ["causal", "s1", "s2", "--corpus", "c1", "--device", "gpu0"], 1, r"unknown device 'gpu0'"),
    ("match crosscoder without one", ["match", "s1", "s2", "--method", "crosscoder"], 1,
     r"models 'm' and 'm2' have no crosscoder at the SAEs' hook; train one with `featstore crosscoder train m m2`"),
    # -- model zoo
    ("finetune unknown parent", ["finetune", "x", "--from", "nosuch"], 1, r"unknown model 'nosuch'"),
    ("train unknown preset", ["train", "x", "--preset", "huge"], 1, r"unknown preset 'huge'"),
    ("train existing", ["train", "m"], 1, r"model 'm' already exists; pass --replace"),
    ("train device gpu0", ["train", "x", "--device", "gpu0", "--corpus", f"{IN}/c1.txt"], 1, r"unknown device 'gpu0'"),
    ("merge with itself", ["merge", "m", "m", "--name", "x"], 1, r"cannot merge 'm' with itself"),
    ("merge unknown", ["merge", "m", "nosuch", "--name", "x"], 1, r"unknown model 'nosuch'"),
    ("merge t", ["merge", "m", "m2", "--name", "x", "--t", "2"], 1, r"--t must be between 0 and 1 \(got 2\.0\)"),
    ("merge method", ["merge", "m", "m2", "--name", "x", "--method", "ties"], 2, r"Invalid value for '--method'"),
    ("merge-sweep steps", ["merge-sweep", "m", "m2", "--steps", "1"], 1, r"--steps must be at least 2"),
    # -- interpretability
    ("explain unknown sae", ["explain", "nosuch"], 1, r"no activations for SAE 'nosuch'"),
    ("explain openai without model", ["explain", "s1", "--backend", "openai"], 1, r"the openai backend needs --model NAME"),
    ("score hf without model", ["score", "s1", "--backend", "hf"], 1, r"the hf backend needs --model FOLDER"),
    ("explain features", ["explain", "s1", "--features", "a,b"], 2, r"'a,b' is not a comma-separated list of feature numbers"),
    ("explain concurrency", ["explain", "s1", "--concurrency", "0"], 2, r"Invalid value for '--concurrency'"),
    # -- pipeline
    ("run unknown step", ["run", "--force", "nosuch"], 1, r"unknown step 'nosuch' for --force"),
    ("run preset", ["run", "--preset", "huge"], 2, r"Invalid value for '--preset'"),
    ("unknown command", ["nosuch"], 2, r"No such command 'nosuch'"),
]
if NO_CUDA:
    CASES.append(("ingest device cuda without cuda", ["ingest", "m", "--corpus", "c1", "--device", "cuda"], 1,
                  r"device 'cuda' asked for but CUDA is not available; use --device cpu"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, built, tmp_path):
    name, args, code, pattern, *setup = case
    root = tmp_path / "wh"
    subprocess.run(["cp", "-a", str(built["wh"].root), str(root)], check=True)
    wh = Warehouse(root)
    wh.relocate()
    for step in setup:
        wh.db_path.unlink() if step == "delete" else step(wh)
    places = {"wh": str(root), "in": str(built["in"]), "tokenizer": str(built["tokenizer"])}
    args = [a.format(**places) for a in args]
    if args[0] != "--warehouse":
        args = ["--warehouse", str(root), *args]
    before = tree_hashes(root)
    result = invoke(*args)
    assert result.exit_code == code, result.output
    lines = re.findall(r"(?:error|Error): [^\r\n]*", result.output)
    assert len(lines) == 1, result.output
    assert re.search(pattern, lines[0]), lines[0]
    assert "unexpected" not in lines[0] and "Traceback" not in result.output
    assert tree_hashes(root) == before
