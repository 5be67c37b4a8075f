"""The model zoo: a micro family trains in seconds and shows what the paper's family shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import run_cli

from featstore.errors import FeatstoreError
from featstore.models import lm, presets

MICRO_CORPORA, MICRO_DOMAINS = presets.family_specs(childes_docs=3000, lua_docs=1000, stories_docs=3000)
MICRO = presets.model_preset(
    "tiny", name="micro", corpora=MICRO_CORPORA, domains=MICRO_DOMAINS, hidden_size=64, intermediate_size=256, num_attention_heads=4, num_key_value_heads=2,
    vocab_size=1024, block_size=64, eval_tokens=4096, tokenizer_chars=400_000,
    base=presets.Schedule(lr=3e-3, weight_decay=0.1, warmup_steps=10, batch_size=16, max_tokens=96_000),
    finetune=presets.Schedule(lr=2e-3, weight_decay=0.01, warmup_steps=5, batch_size=16, max_tokens=24_000),
)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """base (library call) plus lua and tinystories fine-tunes (CLI), in one warehouse."""
    from featstore.warehouse import Warehouse

    wh = Warehouse(tmp_path_factory.mktemp("zoo") / "wh")
    lm.train_base(wh, "base", preset=MICRO, device="cpu")
    outputs = {}
    for name in ("lua", "tinystories"):
        result = run_cli(wh, "finetune", name, "--from", "base", "--device", "cpu")
        assert result.exit_code == 0, result.output
        outputs[name] = result.output
    return wh, outputs


def test_finetunes_win_their_domain_and_base_keeps_python(family):
    from featstore.models.catalog import get_model

    wh, outputs = family
    base = get_model(wh, "base")["metrics"]["val_loss"]
    for name in ("lua", "tinystories"):
        mine = get_model(wh, name)["metrics"]["val_loss"]
        assert mine[name] < base[name]
        assert base["python"] < mine["python"]
        assert f"{name} on its own domain {name}: loss" in outputs[name] and "(lower)" in outputs[name]
        assert "base on python" in outputs[name] and "(base keeps the lower loss)" in outputs[name]


def test_models_are_registered_hf_folders_with_one_tokenizer(family):
    from transformers import AutoModelForCausalLM

    wh, _ = family
    rows = wh.query("SELECT name, kind, path, tokenizer, train_corpus, hyperparams FROM models ORDER BY name").to_pylist()
    assert [r["name"] for r in rows] == ["base", "lua", "tinystories"]
    assert len({r["tokenizer"] for r in rows}) == 1
    assert {r["train_corpus"] for r in rows} == set(MICRO.corpora.values())
    for row in rows:
        assert (wh.root / "models" / row["name"] / "model.safetensors").is_file()
        model = AutoModelForCausalLM.from_pretrained(wh.resolve(row["path"]))  # stored relative to the warehouse
        assert model.config.hidden_size == 64 and not model.config.tie_word_embeddings
        assert json.loads(row["hyperparams"])["preset"]["name"] == "micro"
    assert not [p for p in (wh.root / "models").iterdir() if p.name.startswith(".")]
    lineage = wh.query("SELECT parent, child, relation FROM lineage ORDER BY child").to_pylist()
    assert lineage == [{"parent": "base", "child": "lua", "relation": "finetune"},
                       {"parent": "base", "child": "tinystories", "relation": "finetune"}]
    validation = wh.query("SELECT * FROM model_validation WHERE model = 'base'").to_pylist()
    assert {r["domain"] for r in validation} == set(MICRO.domains)
    assert all(0 < r["val_accuracy"] < 1 and r["val_loss"] > 0 for r in validation)


def test_bad_input_leaves_warehouse_and_disk_unchanged(family, tmp_path, monkeypatch):
    from featstore.models import catalog as registry

    wh, _ = family
    before = wh.query("SELECT name, path FROM models ORDER BY name").to_pylist()
    entries = sorted(p.name for p in (wh.root / "models").iterdir())
    (tmp_path / "empty").mkdir()
    cases = [
        (["finetune", "lua2", "--from", "nobody"], "unknown model 'nobody'"),
        (["finetune", "lua", "--from", "base"], "model 'lua' already exists"),
        (["finetune", "lua2", "--from", "base"], "no default corpus for a model named 'lua2'"),
        (["finetune", "lua2", "--from", "base", "--corpus", str(tmp_path / "nothing.txt")], "is not an existing file"),
        (["finetune", "lua2", "--from", "base", "--corpus", str(tmp_path / "empty")], "has no train documents"),
        (["finetune", "lua2", "--from", "base", "--max-tokens", "0", "--corpus", "generated:lua"], "--max-tokens must be at least 1"),
        (["train", "base2", "--preset", "huge"], "unknown preset 'huge'"),
        (["train", "bad name"], "invalid model name"),
        (["train", "base2", "--device", "cuda:7"] if not torch.cuda.is_available() else ["train", "base2", "--device", "tpu"], "device"),
    ]
    for args, message in cases:
        result = run_cli(wh, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    # a failure while registering (after training and writing) removes the new folder again
    def refuse(*args, **kwargs):
        raise FeatstoreError("registry refused")

    monkeypatch.setattr(registry, "register_model", refuse)
    with pytest.raises(FeatstoreError, match="registry refused"):
        lm.finetune(wh, "lua3", parent="base", corpus=MICRO.corpora["lua"], max_tokens=2048, device="cpu")
    assert wh.query("SELECT name, path FROM models ORDER BY name").to_pylist() == before
    assert sorted(p.name for p in (wh.root / "models").iterdir()) == entries


def test_sentencepiece_tokenizer_converts_exactly(tmp_path):
    sentencepiece = pytest.importorskip("sentencepiece")
    from featstore.text.generators import generate_documents
    from featstore.text.tokenizer import load_sentencepiece_bpe, load_tokenizer

    texts = generate_documents("lua", 40) + generate_documents("stories", 40) + generate_documents("childes", 40)
    def train(prefix: str, **options) -> Path:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_prefix=str(tmp_path / prefix), vocab_size=400, model_type="bpe",
            byte_fallback=True, character_coverage=1.0, max_sentence_length=100_000, minloglevel=2, **options,
        )
        return tmp_path / f"{prefix}.model"

    # Mistral's settings: no normalisation, whitespace kept, digits split
    model = train("sp", normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
                  allow_whitespace_only_pieces=True)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    tok = load_sentencepiece_bpe(model)
    assert len(tok) == 400
    tok.save_pretrained(tmp_path / "hf")
    reloaded = load_tokenizer(tmp_path / "hf")
    for text in texts[::7] + ["Ünïcödé 😀 and\ttabs", "  leading spaces", "x = 12345"]:
        assert tok(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
        assert reloaded(text, add_special_tokens=False)["input_ids"] == sp.encode(text)
    # a model whose normaliser the conversion does not reproduce is refused, not silently mis-encoded
    with pytest.raises(FeatstoreError, match="did not convert"):
        load_sentencepiece_bpe(train("nfkc", normalization_rule_name="nmt_nfkc"))


def test_paper_tokenizer_needs_the_paper_extra(monkeypatch):
    import importlib.util

    from featstore.text import tokenizer

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mistral_common" else real(name, *a))
    with pytest.raises(FeatstoreError, match=r"pip install -e \.\[paper\]"):
        tokenizer.load_mistral_tokenizer()


def test_presets_match_the_paper():
    paper = presets.MODEL_PRESETS["paper"]
    assert (paper.hidden_size, paper.intermediate_size, paper.num_attention_heads, paper.num_key_value_heads,
            paper.vocab_size, paper.block_size, paper.rope_theta) == (512, 1024, 16, 8, 32000, 256, 1e4)
    assert (paper.base.lr, paper.base.weight_decay, paper.base.warmup_steps, paper.base.batch_size) == (6e-4, 0.1, 0, 64)
    assert (paper.finetune.lr, paper.finetune.weight_decay, paper.finetune.warmup_steps) == (2e-5, 0.01, 500)
    model = lm.new_model(presets.model_preset("paper", vocab_size=32000), _FakeTokenizer(32000), seed=0)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(35.1e6, rel=0.01)
    assert presets.model_preset("tiny").corpora["base"].startswith("python-stdlib=0.5+generated:childes")


class _FakeTokenizer:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, None

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


def write_notes(folder: Path) -> str:
    folder.mkdir()
    for i in range(60):
        (folder / f"note{i}.txt").write_text(f"note {i}: the meeting moved to room {i % 7}; bring the map and a pen.\n" * 8)
    return str(folder)


def test_a_corpus_of_ones_own_is_what_tokenizer_and_metrics_see(family, tmp_path):
    """`train` / `finetune --corpus X`: the BPE is trained on X alone, the model measured on X (named
    after it) and, for a fine-tune, on the parent's domains too; a merge on both parents' domains."""
    from featstore.models.catalog import get_model
    from featstore.warehouse import Warehouse

    notes = write_notes(tmp_path / "notes")
    wh, _ = family
    result = run_cli(wh, "finetune", "notes", "--from", "base", "--corpus", notes, "--max-tokens", "2048", "--device",
                     "cpu")
    assert result.exit_code == 0, result.output
    assert set(get_model(wh, "notes")["metrics"]["val_loss"]) == {*MICRO.domains, "notes"}
    result = run_cli(wh, "merge", "lua", "notes", "--name", "luanotes", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert set(get_model(wh, "luanotes")["metrics"]["val_loss"]) == {*MICRO.domains, "notes"}

    own = Warehouse(tmp_path / "own")
    row = lm.train_base(own, "own", preset=lm.preset_for_corpus(own, "own", notes, preset=MICRO), corpus=notes,
                        max_tokens=2048, device="cpu")
    assert row["hyperparams"]["tokenizer_corpora"] == [notes]
    assert set(row["metrics"]["val_loss"]) == {"notes"}
