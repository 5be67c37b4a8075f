"""Registry: models with lineage, SAEs checked against their model's hook width, one primary SAE per model."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pytest
from helpers import run_cli, tiny_texts

from featstore.errors import FeatstoreError
from featstore.models.catalog import (
    get_model,
    list_lineage,
    list_models,
    register_model,
    update_model_metrics,
)
from featstore.saes.catalog import (
    add_sae_folder,
    get_sae,
    list_saes,
    primary_sae,
    register_sae,
    update_sae_metrics,
)
from featstore.text.tokenizer import fingerprint, load_tokenizer, train_bpe


def test_base_finetune_and_merge_form_the_lineage_dag(warehouse, tiny_model_dir, tiny_tokenizer_dir):
    base = register_model(warehouse, "base", tiny_model_dir, kind="base", train_corpus="python-stdlib",
                          hyperparams={"lr": 6e-4}, metrics={"val_loss": 3.1})
    assert base["architecture"] == "MistralForCausalLM" and base["parents"] == []
    assert base["tokenizer"] == fingerprint(load_tokenizer(tiny_tokenizer_dir))
    assert base["hyperparams"] == {"lr": 6e-4} and base["path"] == str(tiny_model_dir.resolve())
    register_model(warehouse, "lua", tiny_model_dir, kind="finetune", parents=["base"])
    register_model(warehouse, "stories", tiny_model_dir, kind="finetune", parents=["base"])
    merged = register_model(warehouse, "luastories", tiny_model_dir, kind="merge", parents=["lua", "stories"],
                            merge_method="slerp", merge_t=0.58)
    assert merged["parents"] == ["lua", "stories"]
    edges = list_lineage(warehouse).to_pylist()
    assert [(e["parent"], e["child"], e["relation"], e["parent_order"], e["merge_t"]) for e in edges] == [
        ("base", "lua", "finetune", 0, None),
        ("lua", "luastories", "merge", 0, 0.58), ("stories", "luastories", "merge", 1, 0.58),
        ("base", "stories", "finetune", 0, None),
    ]
    models = list_models(warehouse)
    assert models.column("name").to_pylist() == ["base", "lua", "stories", "luastories"]
    assert models.column("parents").to_pylist()[3] == "lua,stories"
    assert warehouse.scalar("SELECT count(*) FROM tokenizers") == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"kind": "merge", "parents": ["base"]}, "a merge needs exactly two --parent"),
        ({"kind": "finetune", "parents": []}, "a fine-tune needs exactly one --parent"),
        ({"kind": "finetune", "parents": ["nobody"]}, "unknown parent model 'nobody'"),
        ({"kind": "base", "parents": ["base"]}, "must be distinct models other than itself|a base model has no parents"),
        ({"kind": "imported", "parents": ["base"]}, "give --relation"),
        ({"kind": "merge", "parents": ["base", "base"]}, "must be distinct"),
        ({"kind": "finetune", "parents": ["base"], "merge_t": 0.5}, "describe a merge"),
        ({"kind": "merge", "parents": ["base", "other"], "merge_t": 1.5}, "between 0 and 1"),
        ({"kind": "teacher"}, "unknown model kind 'teacher'"),
    ],
)
def test_bad_lineage_is_refused_and_nothing_is_written(warehouse, tiny_model_dir, kwargs, message):
    register_model(warehouse, "base", tiny_model_dir, kind="base")
    register_model(warehouse, "other", tiny_model_dir, kind="base")
    with pytest.raises(FeatstoreError, match=message):
        register_model(warehouse, "new", tiny_model_dir, **kwargs)
    assert warehouse.scalar("SELECT count(*) FROM models") == 2
    assert warehouse.scalar("SELECT count(*) FROM lineage") == 0


def test_model_folder_needs_config_and_tokenizer_and_a_new_name(warehouse, tiny_model_dir, tmp_path):
    no_config = tmp_path / "no_config"
    shutil.copytree(tiny_model_dir, no_config)
    (no_config / "config.json").unlink()
    with pytest.raises(FeatstoreError, match="has no config.json"):
        register_model(warehouse, "m", no_config, kind="base")
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    shutil.copy(tiny_model_dir / "config.json", no_tokenizer)
    with pytest.raises(FeatstoreError, match="cannot load tokenizer"):
        register_model(warehouse, "m", no_tokenizer, kind="base")
    register_model(warehouse, "m", tiny_model_dir, kind="base")
    with pytest.raises(FeatstoreError, match="model 'm' already exists; use --replace"):
        register_model(warehouse, "m", tiny_model_dir, kind="base")
    assert register_model(warehouse, "m", tiny_model_dir, kind="imported", replace=True)["kind"] == "imported"
    with pytest.raises(FeatstoreError, match="unknown model 'ghost'; see `featstore models`"):
        get_model(warehouse, "ghost")


def test_child_with_another_tokenizer_cannot_join_the_lineage(warehouse, tiny_model_dir, tmp_path):
    other = tmp_path / "other_model"
    shutil.copytree(tiny_model_dir, other)
    train_bpe(tiny_texts(50, seed=9), vocab_size=300, out_dir=other)  # overwrites the tokenizer files
    register_model(warehouse, "base", tiny_model_dir, kind="base")
    with pytest.raises(FeatstoreError, match="different tokenizer from its parent 'base'"):
        register_model(warehouse, "child", other, kind="finetune", parents=["base"])


def test_sae_folder_registration_reads_cfg_and_checks_shapes(warehouse, tiny_model_dir, make_sae_folder):
    register_model(warehouse, "base", tiny_model_dir, kind="base")
    sae = add_sae_folder(warehouse, "s1", "base", make_sae_folder("s1"))
    assert (sae["d_in"], sae["d_sae"], sae["layer"], sae["architecture"]) == (64, 16, 0, "relu")
    assert sae["hook_point"] == "blocks.0.mlp.hook_post" and sae["l1_coeff"] == 0.01 and sae["is_primary"]
    bad = make_sae_folder("bad", shapes={"W_dec": (16, 63)})
    with pytest.raises(FeatstoreError, match=r"W_dec has shape \(16, 63\), expected \(16, 64\)"):
        add_sae_folder(warehouse, "s2", "base", bad)
    (bad / "cfg.json").write_text(json.dumps({"d_in": 64}))
    with pytest.raises(FeatstoreError, match="lacks d_sae, hook_name"):
        add_sae_folder(warehouse, "s2", "base", bad)
    with pytest.raises(FeatstoreError, match="unknown model 'ghost'"):
        add_sae_folder(warehouse, "s3", "ghost", make_sae_folder("s3"))
    assert list_saes(warehouse).column("id").to_pylist() == ["s1"]


def test_sae_width_and_layer_must_match_the_model(warehouse, tiny_model_dir, make_sae_folder):
    register_model(warehouse, "base", tiny_model_dir, kind="base")
    with pytest.raises(FeatstoreError, match="SAE d_in 32 does not match blocks.0.mlp.hook_post of model 'base', which is 64 wide"):
        add_sae_folder(warehouse, "narrow", "base", make_sae_folder("narrow", d_in=32))
    resid = add_sae_folder(warehouse, "resid", "base", make_sae_folder("resid", d_in=32, hook_name="blocks.0.hook_resid_post"))
    assert resid["d_in"] == 32  # the residual stream is hidden_size wide
    with pytest.raises(FeatstoreError, match="has 1 layer"):
        register_sae(warehouse, "deep", "base", None, hook_point="blocks.3.mlp.hook_post", layer=3, d_in=64, d_sae=8,
                     architecture="relu")
    with pytest.raises(FeatstoreError, match="does not name layer 1"):
        register_sae(warehouse, "mixed", "base", None, hook_point="blocks.0.mlp.hook_post", layer=1, d_in=64, d_sae=8,
                     architecture="relu")
    with pytest.raises(FeatstoreError, match="top-k but has no k"):
        register_sae(warehouse, "tk", "base", None, hook_point="blocks.0.mlp.hook_post", layer=0, d_in=64, d_sae=8,
                     architecture="topk")


def test_primary_sae_replace_and_metrics(warehouse, tiny_model_dir, make_sae_folder):
    register_model(warehouse, "base", tiny_model_dir, kind="base")
    with pytest.raises(FeatstoreError, match="model 'base' has no SAE"):
        primary_sae(warehouse, "base")
    add_sae_folder(warehouse, "first", "base", make_sae_folder("first"))
    add_sae_folder(warehouse, "second", "base", make_sae_folder("second"))
    add_sae_folder(warehouse, "side", "base", make_sae_folder("side"), is_primary=False)
    assert primary_sae(warehouse, "base")["id"] == "second"
    assert get_sae(warehouse, "first")["is_primary"] is False

    partition = warehouse.write_partition("second", "somecorpus", [pa.table({"tok": [0], "feature": [1], "act": [0.5]})],
                                          n_tokens=1, origin="import")
    with pytest.raises(FeatstoreError, match="SAE 'second' already exists"):
        add_sae_folder(warehouse, "second", "base", make_sae_folder("second-v2"))
    add_sae_folder(warehouse, "second", "base", make_sae_folder("second-v3", d_sae=32), replace=True)
    assert get_sae(warehouse, "second")["d_sae"] == 32
    assert not partition.exists() and warehouse.scalar("SELECT count(*) FROM activation_partitions") == 0

    update_sae_metrics(warehouse, "second", {"l0": 3.5})
    assert update_sae_metrics(warehouse, "second", {"mse": 0.1})["metrics"] == {"l0": 3.5, "mse": 0.1}
    update_model_metrics(warehouse, "base", {"val_loss": 2.0})
    assert update_model_metrics(warehouse, "base", {"val_loss": 1.5, "acc": 0.4})["metrics"] == {"val_loss": 1.5, "acc": 0.4}
    with pytest.raises(FeatstoreError, match="unknown SAE 'ghost'; see `featstore saes`"):
        update_sae_metrics(warehouse, "ghost", {})


def test_cli_model_and_sae_verbs(tmp_path, tiny_model_dir, make_sae_folder):
    wh = tmp_path / "wh"

    def run(*args):
        result = run_cli(wh, *args, env={"POLARS_TABLE_WIDTH": "1000"})  # no wrapped cells
        assert result.exit_code == 0, result.output
        return result.output

    assert "model base (base, MistralForCausalLM)" in run("model", "add", "base", str(tiny_model_dir), "--kind", "base")
    run("model", "add", "lua", str(tiny_model_dir), "--kind", "finetune", "--parent", "base")
    run("model", "add", "tiny", str(tiny_model_dir), "--kind", "finetune", "--parent", "base")
    out = run("model", "add", "mix", str(tiny_model_dir), "--kind", "merge", "--parent", "lua", "--parent", "tiny",
              "--merge-method", "slerp", "--merge-t", "0.58")
    assert "<- lua, tiny" in out
    assert "SAE base-sae of base: blocks.0.mlp.hook_post 64 -> 16 (relu)" in run(
        "sae", "add", "base-sae", str(make_sae_folder("base-sae")), "--model", "base")
    assert "luastories" not in run("models") and "mix" in run("models")
    assert "slerp" in run("lineage")
    assert "base-sae" in run("saes")
    failed = run_cli(wh, "model", "add", "bad", str(tiny_model_dir), "--kind", "merge", "--parent", "lua")
    assert failed.exit_code == 1 and failed.output.startswith("error: a merge needs exactly two")
