"""mergekit interop: `featstore merge --config` runs mergekit YAMLs (slerp, linear, per-tensor filter
t lists with layer gradients), writes `mergekit_config.yml`, and `model add --kind merge` of a merged
folder reads it into the lineage. Checked against mergekit itself (the `mergekit` test dependency)."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from helpers import invoke
from safetensors.torch import load_file

from featstore.errors import FeatstoreError
from featstore.models.catalog import get_model, list_lineage
from featstore.models.merge import slerp

SLERP_LISTS = {
    "merge_method": "slerp",
    "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 0.5, 1.0]}, {"filter": "mlp", "value": [1.0, 0.5, 0.0]},
                         {"value": 0.3}]},
    "dtype": "float32",
}


def _config(a, b, **overrides) -> dict:
    base = {**SLERP_LISTS, "base_model": str(a),
            "slices": [{"sources": [{"model": str(a), "layer_range": [0, 3]}, {"model": str(b), "layer_range": [0, 3]}]}]}
    return {**base, **overrides}


@pytest.fixture
def pair(warehouse, tmp_path, tiny_tokenizer_dir):
    """Two random three-layer Mistrals (so layer gradients matter) sharing the test tokenizer, registered."""
    from transformers import MistralConfig, MistralForCausalLM

    from featstore.models.catalog import register_model
    from featstore.text.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    config = MistralConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=40, num_hidden_layers=3,
                           num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    folders = []
    for name, seed in (("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        folder = tmp_path / name
        MistralForCausalLM(config).save_pretrained(folder)
        tok.save_pretrained(folder)
        register_model(warehouse, name, folder, kind="imported")
        folders.append(folder)
    return warehouse, folders[0], folders[1]


def _featstore_merge(wh, tmp_path, config: dict, name: str = "m") -> dict:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(config))
    result = invoke("merge", "--config", str(path), "--name", name, "--device", "cpu", "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    return get_model(wh, name)


def _mergekit(config: dict, out) -> dict:
    mergekit = pytest.importorskip("mergekit.merge", reason="the mergekit oracle (pip install mergekit) is not installed")
    from mergekit.config import MergeConfiguration

    mergekit.run_merge(MergeConfiguration.model_validate(config), str(out), mergekit.MergeOptions(copy_tokenizer=True))
    return load_file(str(next(out.glob("*.safetensors"))))


def _max_diff(ours: dict, theirs: dict) -> float:
    shared = set(ours) & set(theirs)
    assert len(shared) == len(ours) - sum("rotary" in k for k in ours) > 0, sorted(set(ours) ^ set(theirs))
    return max((ours[k].float() - theirs[k].float()).abs().max().item() for k in shared)


@pytest.mark.parametrize("case", ["slerp-lists", "slerp-scalar", "linear"])
def test_featstore_merge_of_a_mergekit_config_matches_mergekit(pair, tmp_path, case):
    wh, a, b = pair
    config = {
        "slerp-lists": _config(a, b),
        "slerp-scalar": _config(a, b, parameters={"t": 0.58}),
        "linear": {"merge_method": "linear", "dtype": "float32",
                   "models": [{"model": str(a), "parameters": {"weight": 0.7}},
                              {"model": str(b), "parameters": {"weight": [{"filter": "mlp", "value": [0.1, 0.9]}, {"value": 0.3}]}}]},
    }[case]
    row = _featstore_merge(wh, tmp_path, config)
    ours = load_file(str(next((tmp_path / "wh" / "models" / "m").glob("*.safetensors"))))
    theirs = _mergekit(config, tmp_path / "mergekit-out")
    assert _max_diff(ours, theirs) <= 1e-5
    # The config featstore wrote beside its output reproduces the merge in mergekit.
    written = yaml.safe_load((tmp_path / "wh" / "models" / "m" / "mergekit_config.yml").read_text())
    assert _max_diff(ours, _mergekit(written, tmp_path / "again")) <= 1e-5
    lineage = [r for r in list_lineage(wh).to_pylist() if r["child"] == "m"]
    assert [r["parent"] for r in lineage] == ["a", "b"] and {r["merge_method"] for r in lineage} == {config["merge_method"]}
    assert row["hyperparams"]["merge"]["method"] == config["merge_method"]


def test_t_lists_change_each_tensor_as_mergekit_describes(pair, tmp_path):
    """Without mergekit: attention tensors of layer 0 equal a's (t = 0), of layer 2 b's (t = 1); MLPs the reverse."""
    wh, a, b = pair
    _featstore_merge(wh, tmp_path, _config(a, b))
    merged = load_file(str(next((tmp_path / "wh" / "models" / "m").glob("*.safetensors"))))
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    key = "model.layers.{}.{}.weight"
    assert torch.equal(merged[key.format(0, "self_attn.q_proj")], ta[key.format(0, "self_attn.q_proj")])
    assert torch.equal(merged[key.format(2, "self_attn.q_proj")], tb[key.format(2, "self_attn.q_proj")])
    assert torch.equal(merged[key.format(0, "mlp.down_proj")], tb[key.format(0, "mlp.down_proj")])
    assert torch.equal(merged[key.format(2, "mlp.down_proj")], ta[key.format(2, "mlp.down_proj")])
    embed = "model.embed_tokens.weight"  # outside the layers and unfiltered: t = 0.3
    torch.testing.assert_close(merged[embed], slerp(0.3, ta[embed], tb[embed]))
    assert not torch.equal(merged[embed], ta[embed])


def test_model_add_reads_the_mergekit_config_of_a_merged_folder(pair, tmp_path):
    wh, a, b = pair
    folder = tmp_path / "merged-elsewhere"
    try:
        _mergekit(_config(a, b), folder)
    except pytest.skip.Exception:  # without mergekit, featstore's own output folder carries the same file
        _featstore_merge(wh, tmp_path, _config(a, b))
        shutil.copytree(tmp_path / "wh" / "models" / "m", folder)
    assert (folder / "mergekit_config.yml").is_file()
    result = invoke("model", "add", "imported-merge", str(folder), "--kind", "merge", "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    row = get_model(wh, "imported-merge")
    assert row["parents"] == ["a", "b"]
    assert row["hyperparams"]["merge"]["t"] == SLERP_LISTS["parameters"]["t"]
    lineage = [r for r in list_lineage(wh).to_pylist() if r["child"] == "imported-merge"]
    assert [(r["merge_method"], r["merge_t"]) for r in lineage] == [("slerp", None)] * 2  # t lists: no single t


def test_a_scalar_t_goes_into_the_lineage(pair, tmp_path):
    wh, a, b = pair
    _featstore_merge(wh, tmp_path, _config(a, b, parameters={"t": 0.25}), name="quarter")
    assert {r["merge_t"] for r in list_lineage(wh).to_pylist() if r["child"] == "quarter"} == {0.25}


@pytest.mark.parametrize("change,message", [
    ({"merge_method": "ties"}, "merge_method 'ties' is not supported"),
    ({"dtype": "bfloat16"}, "dtype 'bfloat16' is not supported"),
    ({"tokenizer_source": "union"}, "tokenizer_source 'union' is not supported"),
    ({"parameters": {}}, "slerp needs parameters.t"),
    ({"base_model": "nowhere"}, "slerp needs base_model"),
])
def test_configs_featstore_cannot_run_are_refused_by_name(pair, tmp_path, change, message):
    from featstore.models.merge import merge_from_config

    wh, a, b = pair
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(_config(a, b, **change)))
    with pytest.raises(FeatstoreError, match=message):
        merge_from_config(wh, path, name="never", device="cpu")
    assert "never" not in [r["name"] for r in wh.query("SELECT name FROM models").to_pylist()]
