"""Corpus slices: tokenized once, every occurrence a stable tok, ranges disjoint, replace drops dependents."""

from __future__ import annotations

import pyarrow as pa
import pytest
from helpers import run_cli, tiny_texts

import featstore.text.slices as corpus_module
from featstore.errors import FeatstoreError
from featstore.text.slices import (
    add_corpus,
    add_corpus_texts,
    corpus_token_blocks,
    get_corpus,
    list_corpora,
)
from featstore.text.tokenizer import fingerprint, load_tokenizer


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("\n\n".join(tiny_texts(10, seed=3)))
    return path


def test_tokens_are_the_tokenizers_ids_keyed_by_contiguous_tok(warehouse, text_file, tiny_tokenizer_dir):
    tok = load_tokenizer(tiny_tokenizer_dir)
    texts = tiny_texts(10, seed=3)
    row = add_corpus(warehouse, "c", str(text_file), tiny_tokenizer_dir)
    expected = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert row["n_documents"] == 10 and row["n_tokens"] == sum(map(len, expected))
    assert row["tok_start"] == 0 and row["tokenizer"] == fingerprint(tok)
    tokens = warehouse.query("SELECT tok, doc_id, pos, token_id FROM tokens WHERE corpus = 'c' ORDER BY tok").to_pylist()
    assert [t["tok"] for t in tokens] == list(range(row["n_tokens"]))
    for doc_id, ids in enumerate(expected):
        assert [t["token_id"] for t in tokens if t["doc_id"] == doc_id] == ids
        assert [t["pos"] for t in tokens if t["doc_id"] == doc_id] == list(range(len(ids)))
    rebuilt = warehouse.query(
        "SELECT string_agg(text, '' ORDER BY tok) AS doc FROM token_text WHERE corpus = 'c' GROUP BY doc_id ORDER BY doc_id"
    ).column("doc").to_pylist()
    assert rebuilt == texts
    assert warehouse.scalar("SELECT count(*) FROM vocab") == len(tok)
    assert warehouse.query("SELECT n_tokens FROM documents ORDER BY doc_id").column(0).to_pylist() == list(map(len, expected))


def test_second_corpus_gets_the_next_tok_range_and_shares_the_vocab(warehouse, text_file, tiny_tokenizer_dir):
    first = add_corpus(warehouse, "one", str(text_file), tiny_tokenizer_dir)
    second = add_corpus(warehouse, "two", str(text_file), tiny_tokenizer_dir, max_docs=3)
    assert second["tok_start"] == first["n_tokens"] and second["n_documents"] == 3
    assert warehouse.scalar("SELECT count(*) FROM tokenizers") == 1
    assert warehouse.scalar("SELECT count(DISTINCT tok) FROM tokens") == first["n_tokens"] + second["n_tokens"]
    assert list_corpora(warehouse).column("name").to_pylist() == ["one", "two"]


def test_max_tokens_cuts_the_last_document_to_an_exact_total(warehouse, text_file, tiny_tokenizer_dir):
    row = add_corpus(warehouse, "c", str(text_file), tiny_tokenizer_dir, max_tokens=101)
    assert row["n_tokens"] == 101
    assert warehouse.scalar("SELECT sum(n_tokens) FROM documents") == 101
    assert row["meta"]["max_tokens"] == 101


def test_token_blocks_follow_documents_across_read_blocks(warehouse, text_file, tiny_tokenizer_dir, monkeypatch):
    add_corpus(warehouse, "first", str(text_file), tiny_tokenizer_dir, max_docs=2)
    row = add_corpus(warehouse, "c", str(text_file), tiny_tokenizer_dir)
    monkeypatch.setattr(corpus_module, "READ_BLOCK_TOKENS", 50)  # several reads, some shorter than a document
    blocks = list(corpus_token_blocks(warehouse, "c"))
    assert [doc_id for doc_id, _, _ in blocks] == list(range(row["n_documents"]))
    tokens = warehouse.query("SELECT tok, doc_id, token_id FROM tokens WHERE corpus = 'c' ORDER BY tok")
    for doc_id, toks, token_ids in blocks:
        mine = tokens.filter(pa.compute.equal(tokens.column("doc_id"), doc_id))
        assert toks.tolist() == mine.column("tok").to_pylist()
        assert token_ids.tolist() == mine.column("token_id").to_pylist()
    assert blocks[0][1][0] == row["tok_start"]


def test_existing_name_needs_replace_which_drops_its_partitions(warehouse, text_file, tiny_tokenizer_dir):
    add_corpus(warehouse, "c", str(text_file), tiny_tokenizer_dir)
    with pytest.raises(FeatstoreError, match="corpus 'c' already exists; use --replace"):
        add_corpus(warehouse, "c", str(text_file), tiny_tokenizer_dir)
    partition = warehouse.write_partition(
        "some-sae", "c", [pa.table({"tok": [0, 1], "feature": [3, 4], "act": [1.0, 2.0]})], n_tokens=10, origin="import"
    )
    old = get_corpus(warehouse, "c")
    row = add_corpus(warehouse, "c", str(text_file), tiny_tokenizer_dir, max_docs=4, replace=True)
    assert row["n_documents"] == 4
    assert row["tok_start"] == old["tok_start"] + old["n_tokens"]  # old tok ids are never reused
    assert warehouse.scalar("SELECT count(*) FROM tokens") == row["n_tokens"]
    assert warehouse.scalar("SELECT count(*) FROM activation_partitions") == 0
    assert warehouse.scalar("SELECT count(*) FROM activations") == 0
    assert not partition.exists()


def test_texts_from_the_caller_and_an_empty_source(warehouse, tiny_tokenizer_dir):
    docs = [("a", "the cat sat"), ("b", "   "), ("c", "on a mat")]
    row = add_corpus_texts(warehouse, "mine", docs, tiny_tokenizer_dir, source_label="inline", meta={"seed": 1})
    assert row["n_documents"] == 2 and row["meta"]["seed"] == 1
    assert warehouse.query("SELECT origin FROM documents ORDER BY doc_id").column(0).to_pylist() == ["a", "c"]
    with pytest.raises(FeatstoreError, match="gave no tokens"):
        add_corpus_texts(warehouse, "empty", [("x", "")], tiny_tokenizer_dir, source_label="nothing")
    with pytest.raises(FeatstoreError, match="unknown corpus 'empty'"):
        get_corpus(warehouse, "empty")


def test_part_splits_a_source_into_disjoint_train_and_validation(warehouse, text_file, tiny_tokenizer_dir):
    train = add_corpus(warehouse, "train", str(text_file), tiny_tokenizer_dir, part="train")
    validation = add_corpus(warehouse, "val", str(text_file), tiny_tokenizer_dir, part="validation")
    whole = add_corpus(warehouse, "all", str(text_file), tiny_tokenizer_dir)
    assert train["n_documents"] > 0 and validation["n_documents"] > 0
    assert train["n_tokens"] + validation["n_tokens"] == whole["n_tokens"]


def test_cli_corpus_add_and_corpora(tmp_path, text_file, tiny_tokenizer_dir):
    wh = str(tmp_path / "wh")
    result = run_cli(wh, "corpus", "add", "c", "--source", str(text_file), "--tokenizer", str(tiny_tokenizer_dir),
                     "--max-tokens", "50")
    assert result.exit_code == 0, result.output
    assert "corpus c: " in result.output and "50 tokens" in result.output
    listing = run_cli(wh, "corpora")
    assert listing.exit_code == 0 and "c" in listing.output and "50" in listing.output


def test_documents_are_capped_and_too_few_documents_refused(warehouse, text_file, tiny_tokenizer_dir):
    capped = add_corpus(warehouse, "capped", str(text_file), tiny_tokenizer_dir, doc_tokens=5)
    lengths = warehouse.query("SELECT n_tokens FROM documents WHERE corpus = 'capped'").column(0).to_pylist()
    assert capped["n_documents"] == 10 and max(lengths) == 5 and capped["n_tokens"] == sum(lengths)
    assert get_corpus(warehouse, "capped")["meta"]["doc_tokens"] == 5
    with pytest.raises(FeatstoreError, match="would have 10 documents, fewer than --min-docs 11"):
        add_corpus(warehouse, "few", str(text_file), tiny_tokenizer_dir, min_docs=11)
    assert [r["name"] for r in list_corpora(warehouse).to_pylist()] == ["capped"]
    result = run_cli(warehouse, "corpus", "add", "cli", "--source", str(text_file), "--tokenizer",
                     str(tiny_tokenizer_dir), "--doc-tokens", "3", "--min-docs", "10")
    assert result.exit_code == 0, result.output
    assert warehouse.scalar("SELECT max(n_tokens) FROM documents WHERE corpus = 'cli'") == 3
