"""Any common HF decoder: a random tiny model of each family (transformers' own config classes, one
layer, hidden 16) is registered, gets an SAE trained on its MLP hidden activation, and is ingested;
its hook points are where the family's code puts them. Unsupported layouts are refused at `model add`."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from featstore.errors import FeatstoreError
from featstore.models.capture import capture_mlp_hidden, splice_mlp_hidden
from featstore.models.layouts import decoder_layers, hook_site
from featstore.saes.presets import sae_preset

ATTENTION = dict(num_attention_heads=2)
# family -> (config class, its size fields, the down projection's path inside a layer, MLP width)
FAMILIES = {
    "llama": (tf.LlamaConfig, dict(hidden_size=16, intermediate_size=40, num_key_value_heads=1), "mlp.down_proj", 40),
    "mistral": (tf.MistralConfig, dict(hidden_size=16, intermediate_size=40, num_key_value_heads=1), "mlp.down_proj", 40),
    "qwen2": (tf.Qwen2Config, dict(hidden_size=16, intermediate_size=40, num_key_value_heads=1), "mlp.down_proj", 40),
    "qwen3": (tf.Qwen3Config, dict(hidden_size=16, intermediate_size=40, num_key_value_heads=1, head_dim=8), "mlp.down_proj", 40),
    "gemma": (tf.GemmaConfig, dict(hidden_size=16, intermediate_size=40, num_key_value_heads=1, head_dim=8), "mlp.down_proj", 40),
    "gemma2": (tf.Gemma2Config, dict(hidden_size=16, intermediate_size=40, num_key_value_heads=1, head_dim=8), "mlp.down_proj", 40),
    "phi": (tf.PhiConfig, dict(hidden_size=16, intermediate_size=40), "mlp.fc2", 40),
    "phi3": (tf.Phi3Config, dict(hidden_size=16, intermediate_size=40), "mlp.down_proj", 40),
    "olmo": (tf.OlmoConfig, dict(hidden_size=16, intermediate_size=40), "mlp.down_proj", 40),
    "gpt2": (tf.GPT2Config, dict(n_embd=16, n_inner=40, n_head=2, n_positions=128), "mlp.c_proj", 40),
    "gpt_neox": (tf.GPTNeoXConfig, dict(hidden_size=16, intermediate_size=40), "mlp.dense_4h_to_h", 40),
    "gptj": (tf.GPTJConfig, dict(n_embd=16, n_inner=40, n_head=2, rotary_dim=4, n_positions=128), "mlp.fc_out", 40),
    "opt": (tf.OPTConfig, dict(hidden_size=16, ffn_dim=40, word_embed_proj_dim=16, max_position_embeddings=128), "fc2", 40),
    "falcon": (tf.FalconConfig, dict(hidden_size=16), "mlp.dense_4h_to_h", 64),  # Falcon's MLP is 4 x hidden
}


def family_config(family: str, vocab_size: int):
    cls, sizes, _, _ = FAMILIES[family]
    layers = {"n_layer": 1} if "n_embd" in sizes else {"num_hidden_layers": 1}
    heads = {} if "n_head" in sizes else ATTENTION
    return cls(vocab_size=vocab_size, pad_token_id=0, bos_token_id=1, eos_token_id=2, **layers, **heads, **sizes)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, tiny_tokenizer_dir):
    """Each family's random tiny model saved as an HF folder with the test tokenizer."""
    from featstore.text.tokenizer import load_tokenizer

    tok = load_tokenizer(tiny_tokenizer_dir)
    dirs = {}
    for family in FAMILIES:
        torch.manual_seed(0)
        model = tf.AutoModelForCausalLM.from_config(family_config(family, len(tok)))
        dirs[family] = tmp_path_factory.mktemp(family)
        model.save_pretrained(dirs[family])
        tok.save_pretrained(dirs[family])
    return dirs


@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_registered_trained_and_ingested(registered_warehouse, family_dirs, family):
    from featstore.activations.ingest import ingest
    from featstore.models.catalog import register_model
    from featstore.models.hf import load_model
    from featstore.saes.training import train_sae
    from featstore.text.slices import add_corpus

    wh, path = registered_warehouse, family_dirs[family]
    _, _, down_path, width = FAMILIES[family]
    register_model(wh, family, path, kind="imported")
    # Some families' tokenizer classes load the shared files differently: a corpus per family's own.
    add_corpus(wh, family, wh.scalar("SELECT source FROM corpora WHERE name = 'evalset'"), path)

    model = load_model(path, "cpu")
    layer0 = decoder_layers(model)[0]
    assert hook_site(model, "blocks.0.mlp.hook_post").module is layer0.get_submodule(down_path)
    assert hook_site(model, "blocks.0.hook_resid_post").module is layer0
    ids = torch.randint(3, 300, (2, 9))
    with capture_mlp_hidden(model, 0) as mlp, capture_mlp_hidden(model, "blocks.0.hook_resid_post") as resid:
        clean = model(input_ids=ids).logits
    assert mlp.value.shape[-1] == width and mlp.value.numel() == 2 * 9 * width and resid.value.shape == (2, 9, 16)
    with splice_mlp_hidden(model, 0, torch.zeros_like):
        assert not torch.allclose(model(input_ids=ids).logits, clean), "the MLP hook must feed the model's output"

    settings = sae_preset("tiny", expansion=2, tokens=24 * 8 * 3, batch_blocks=8, eval_tokens=24 * 4, resample_every=1000)
    row = train_sae(wh, family, settings=settings, corpus=family, device="cpu", progress=False)
    assert (row["hook_point"], row["d_in"], row["d_sae"]) == ("blocks.0.mlp.hook_post", width, 2 * width)
    assert row["metrics"]["fvu"] == row["metrics"]["fvu"], "evaluation ran (FVU is a number)"
    done = ingest(wh, family, corpus=family, sae_id=row["id"], device="cpu", progress=False)
    assert done["rows"] > 0 and done["tokens"] > 0


def test_a_model_without_a_findable_mlp_is_refused_at_registration(warehouse, tmp_path, tiny_tokenizer_dir):
    """Mixtral keeps its experts in fused parameter tensors: no single down projection to hook."""
    from featstore.models.catalog import register_model
    from featstore.text.tokenizer import load_tokenizer

    warehouse.create()
    tok = load_tokenizer(tiny_tokenizer_dir)
    config = tf.MixtralConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=40, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, num_local_experts=2, num_experts_per_tok=1)
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / "moe")
    tok.save_pretrained(tmp_path / "moe")
    with pytest.raises(FeatstoreError, match=r"cannot find the MLP down projection.*supports causal LMs with blocks\.L\.mlp\.hook_post"):
        register_model(warehouse, "moe", tmp_path / "moe", kind="imported")
    assert warehouse.query("SELECT count(*) AS n FROM models").column("n")[0].as_py() == 0


def test_unsupported_hook_points_are_refused_at_sae_add(registered_warehouse, make_sae_folder):
    from featstore.saes.catalog import add_sae_folder

    folder = make_sae_folder("attn", d_in=32, hook_name="blocks.0.attn.hook_z")
    with pytest.raises(FeatstoreError, match=r"hook point 'blocks.0.attn.hook_z' is not supported; featstore captures"):
        add_sae_folder(registered_warehouse, "attn", "base", folder)
    resid = make_sae_folder("resid", d_in=32, hook_name="blocks.0.hook_resid_post")
    assert add_sae_folder(registered_warehouse, "resid", "base", resid)["d_in"] == 32
