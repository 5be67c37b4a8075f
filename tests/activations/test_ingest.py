"""Ingest: sparse rows equal the dense computation, atomic replace, and every refusal leaves no trace."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from helpers import run_cli, tiny_texts

from featstore.activations.ingest import _finite, ingest, prefetched
from featstore.errors import FeatstoreError
from featstore.models.capture import mlp_activations
from featstore.models.hf import load_model
from featstore.saes import build_sae, load_sae, save_sae


def dense_expectation(wh, model_dir, sae_folder, corpus, context):
    from featstore.text.slices import corpus_token_blocks

    model, sae = load_model(model_dir, "cpu"), load_sae(sae_folder)
    rows = []
    for _doc, toks, ids in corpus_token_blocks(wh, corpus):
        for s in range(0, len(ids), context):
            feats = sae.encode(mlp_activations(model, torch.tensor(ids[s : s + context], dtype=torch.long)[None], 0)[0])
            r, f = torch.nonzero(feats > 0, as_tuple=True)
            rows += zip(toks[s : s + context][r.numpy()].tolist(), f.tolist(), feats[r, f].tolist())
    return sorted(rows)


@pytest.mark.parametrize("context", [256, 7])
def test_rows_equal_the_dense_computation(setup, tiny_model_dir, context):
    wh, folder = setup
    done = ingest(wh, "m", context=context, batch_size=3, device="cpu", progress=False)
    assert done["corpus"] == "c" and done["sae"] == "m-sae"
    table = pq.read_table(done["path"])
    got = sorted(zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))))
    expected = dense_expectation(wh, tiny_model_dir, folder, "c", context)
    assert len(got) == len(expected) == done["rows"] > 0
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], rtol=1e-4, atol=1e-5)
    assert wh.scalar("SELECT min(act) FROM activations WHERE sae = 'm-sae'") > 0


def test_rerun_replaces_and_nan_leaves_the_old_partition(setup, monkeypatch):
    wh, _ = setup
    first = ingest(wh, "m", device="cpu", progress=False)
    again = ingest(wh, "m", corpus="c", sae_id="m-sae", device="cpu", progress=False)
    assert wh.scalar("SELECT count(*) FROM activations") == first["rows"] == again["rows"]
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 1

    from featstore import saes as sae_module

    real_load = sae_module.load_sae

    def poisoned(folder, device="cpu"):
        sae = real_load(folder, device)
        sae.b_enc.data[0] = float("nan")
        return sae

    monkeypatch.setattr(sae_module, "load_sae", poisoned)
    with pytest.raises(FeatstoreError, match="NaN/inf"):
        ingest(wh, "m", device="cpu", progress=False)
    assert wh.scalar("SELECT count(*) FROM activations") == first["rows"]
    assert str(wh.root / wh.scalar("SELECT path FROM activation_partitions")) == again["path"]  # stored relative to the root
    files = list(wh.partition_dir("m-sae", "c").iterdir())
    assert [f.name for f in files] == [again["path"].rsplit("/", 1)[1]]


def test_refusals_write_nothing(setup, tmp_path, tiny_tokenizer_dir):
    from featstore.text.slices import add_corpus
    from featstore.text.tokenizer import train_bpe

    wh, folder = setup
    other_tok = tmp_path / "other_tok"
    train_bpe(tiny_texts(50, seed=9), vocab_size=300, out_dir=other_tok)
    (tmp_path / "other.txt").write_text("\n\n".join(tiny_texts(3, seed=1)))
    add_corpus(wh, "other", str(tmp_path / "other.txt"), other_tok)
    with pytest.raises(FeatstoreError, match="tokenized with tokenizer"):
        ingest(wh, "m", corpus="other", device="cpu", progress=False)
    with pytest.raises(FeatstoreError, match="unknown model 'ghost'"):
        ingest(wh, "ghost", device="cpu", progress=False)
    with pytest.raises(FeatstoreError, match="reads layer 0, not layer 1"):
        ingest(wh, "m", layer=1, device="cpu", progress=False)
    add_corpus(wh, "c2", str(tmp_path / "other.txt"), tiny_tokenizer_dir)
    with pytest.raises(FeatstoreError, match=r"several corpora .*\(c, c2\)"):
        ingest(wh, "m", device="cpu", progress=False)
    # Weights that no longer match the registered width (e.g. overwritten by another run).
    save_sae(build_sae("relu", d_in=32, d_sae=96), folder)
    with pytest.raises(FeatstoreError, match="weights have d_in 32"):
        ingest(wh, "m", corpus="c", device="cpu", progress=False)
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0
    assert not wh.activations_dir.exists() or not any(wh.activations_dir.rglob("*.parquet"))


def test_cli_ingest_defaults_and_errors(setup):
    wh, _ = setup
    result = run_cli(wh, "ingest", "m", "--batch-size", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "m-sae on c:" in result.output and "tokens/s" in result.output
    result = run_cli(wh, "ingest", "ghost")
    assert result.exit_code == 1 and result.output.strip() == "error: unknown model 'ghost'; see `featstore models`"


def test_cli_ingest_takes_several_corpora(setup, tmp_path, tiny_tokenizer_dir):
    from featstore.text.slices import add_corpus

    wh, _ = setup
    source = tmp_path / "more.txt"
    source.write_text("\n\n".join(tiny_texts(4, seed=9)))
    add_corpus(wh, "d", str(source), tiny_tokenizer_dir)
    refused = run_cli(wh, "ingest", "m", "--corpus", "c", "--corpus", "nope")
    assert refused.exit_code == 1 and "unknown corpus 'nope'" in refused.output
    assert wh.scalar("SELECT count(*) FROM activation_partitions") == 0  # checked before the first was computed
    both = run_cli(wh, "ingest", "m", "--corpus", "c", "--corpus", "d", "--device", "cpu")
    assert both.exit_code == 0, both.output
    assert "m-sae on c:" in both.output and "m-sae on d:" in both.output
    every = run_cli(wh, "ingest", "m", "--all-corpora", "--device", "cpu")
    assert every.exit_code == 0 and every.output.count("m-sae on") == 2, every.output
    assert sorted(wh.query("SELECT corpus FROM activation_partitions").column(0).to_pylist()) == ["c", "d"]


def test_prefetched_keeps_order_raises_and_stops():
    """Encoding runs a thread ahead of writing: same items in order, the producer's error raised to the writer,
    and a writer that stops early stops the producer."""
    import threading

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise FeatstoreError("NaN/inf activations")

    with pytest.raises(FeatstoreError, match="NaN/inf"):
        list(prefetched(failing()))

    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert len(produced) <= 3 + 2 + 1  # what was taken, the queue, and the one in hand
    assert not any(t.name == "featstore-encode" for t in threading.enumerate())



def test_finite_check_survives_an_overflowing_sum():
    assert _finite(torch.tensor([3e38, 3e38, 1.0]))  # the sum overflows to inf; every value is finite
    assert not _finite(torch.tensor([1.0, float("nan")]))
    assert not _finite(torch.tensor([1.0, float("-inf")]))
    assert not _finite(torch.tensor([float("inf"), float("-inf")]))  # the sum is NaN
