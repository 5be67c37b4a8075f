"""`featstore export-features --format delphi`: the cached token windows are the corpus's real tokens cut
as delphi cuts its own (one stream of the documents, `context`-token rows, the ragged tail dropped), so no
row holds padding, every location names the token its activation was stored for, and the per-token
frequency delphi computes from the cache (firings / cached tokens) is featstore's; a `--context` delphi
cannot cut into its 32-token examples is refused before anything is written."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import invoke, refusal_line, tree_hashes, write_sae_folder

from featstore.activations.ingest import windows
from featstore.export.viewers import delphi

HOOK = "blocks.0.mlp.hook_post"


@pytest.fixture
def ingested(registered_warehouse, tmp_path):
    """SAE 'varied-sae' (the template's SAE shape, zero biases, so its features fire on 35-75 % of tokens, not on
    all or none) ingested on 'evalset' (510 tokens: 15 rows of 32 and a 30-token tail); its stored (tok, feature) -> act."""
    from safetensors.numpy import load_file, save_file

    from featstore.saes.catalog import add_sae_folder

    wh = registered_warehouse
    folder = write_sae_folder(tmp_path / "varied-sae")
    weights = load_file(str(folder / "sae_weights.safetensors"))
    weights["b_enc"][:] = 0.0
    weights["b_dec"][:] = 0.0
    save_file(weights, str(folder / "sae_weights.safetensors"))
    add_sae_folder(wh, "varied-sae", "base", folder)
    result = invoke("ingest", "base", "--sae", "varied-sae", "--device", "cpu", "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    table = pq.read_table(wh.partition_files("varied-sae", "evalset"))
    stored = {(t, f): a for t, f, a in zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act")))}
    return wh, stored


def _export(wh, out, context: int | str = 32, *extra):
    return invoke("export-features", "varied-sae", "--format", "delphi", "--out", str(out), "--context", str(context),
                  *extra, "--warehouse", str(wh.root))


def _corpus_stream(wh) -> tuple[np.ndarray, np.ndarray]:
    """(tok, token_id) of every corpus token, documents in order: what the windows must be cut from."""
    spans = list(windows(wh, "evalset", 10**9))
    return np.concatenate([t for t, _ in spans]), np.concatenate([i for _, i in spans])


def _read_cache(module):
    """(tokens, locations with absolute latents, float activations) of every split, as delphi's TensorBuffer loads them."""
    from safetensors.numpy import load_file

    tokens, locations, activations = None, [], []
    for path in sorted(module.glob("*.safetensors"), key=lambda p: int(p.stem.split("_")[0])):
        split = load_file(str(path))
        assert tokens is None or np.array_equal(tokens, split["tokens"])  # every split carries the same windows
        tokens = split["tokens"]
        loc = split["locations"].astype(np.int64)
        loc[:, 2] += int(path.stem.split("_")[0])
        locations.append(loc)
        activations.append(split["activations"].astype(np.float32))
    return tokens, np.concatenate(locations), np.concatenate(activations)


def _pad_id(wh) -> int:
    from featstore.text.tokenizer import load_tokenizer

    return load_tokenizer(wh.query("SELECT path FROM models WHERE name = 'base'").column(0)[0].as_py()).pad_token_id


@pytest.mark.parametrize("context", [32, 64])
def test_windows_are_the_corpus_tokens_without_padding(ingested, tmp_path, context):
    wh, _ = ingested
    result = _export(wh, tmp_path / "delphi", context)
    assert result.exit_code == 0, result.output
    module = tmp_path / "delphi" / HOOK
    tokens, _, _ = _read_cache(module)
    _, ids = _corpus_stream(wh)
    n_rows = len(ids) // context
    assert tokens.shape == (n_rows, context) and n_rows > 0
    assert np.array_equal(tokens.reshape(-1), ids[: n_rows * context])  # the real tokens, in corpus order
    pad = _pad_id(wh)
    assert pad is not None and not (tokens == pad).any()
    assert not (tokens == pad).all(axis=1).any() and not (tokens == 0).all(axis=1).any()  # no padding-only window
    config = json.loads((module / "config.json").read_text())
    assert config["cache_ctx_len"] == config["ctx_len"] == context
    assert config["n_tokens"] == tokens.size and config["featstore_corpus_tokens"] == len(ids)
    assert config["featstore_tail_tokens_dropped"] == len(ids) - tokens.size < context


def test_locations_name_the_tokens_their_activations_were_stored_for(ingested, tmp_path):
    wh, stored = ingested
    assert _export(wh, tmp_path / "delphi").exit_code == 0
    tokens, locations, activations = _read_cache(tmp_path / "delphi" / HOOK)
    toks, ids = _corpus_stream(wh)
    flat = locations[:, 0] * 32 + locations[:, 1]
    assert np.array_equal(tokens.reshape(-1)[flat], ids[flat])  # the window token is the corpus token there
    found = {(int(toks[i]), int(f)): float(a) for i, f, a in zip(flat, locations[:, 2], activations)}
    cached = set(toks[: tokens.size].tolist())
    expected = {key: act for key, act in stored.items() if key[0] in cached}  # the dropped tail's too are gone
    assert found.keys() == expected.keys() and len(found) == len(locations)
    assert max(abs(found[k] - expected[k]) / max(1.0, abs(expected[k])) for k in expected) < 1e-3  # float16


def test_delphi_frequency_from_the_cache_is_featstores(ingested, tmp_path):
    wh, stored = ingested
    assert _export(wh, tmp_path / "delphi").exit_code == 0
    tokens, locations, _ = _read_cache(tmp_path / "delphi" / HOOK)
    # delphi's LatentDataset: per_token_frequency = firings of the latent / (rows x context)
    latents, counts = np.unique(locations[:, 2], return_counts=True)
    delphi_freq = dict(zip(latents.tolist(), (counts / tokens.size).tolist()))
    toks, _ = _corpus_stream(wh)
    cached = set(toks[: tokens.size].tolist())
    firings: dict[int, int] = {}
    for tok, feature in stored:
        if tok in cached:
            firings[feature] = firings.get(feature, 0) + 1
    assert delphi_freq == {f: n / len(cached) for f, n in firings.items()}  # featstore's count / real tokens, exactly
    assert len(set(delphi_freq.values())) > 1 and max(delphi_freq.values()) < 1  # neither all nor none of the tokens
    n_tokens = wh.query("SELECT n_tokens FROM corpora WHERE name = 'evalset'").column(0)[0].as_py()
    everywhere = {f: sum(1 for _, g in stored if g == f) / n_tokens for f in firings}
    assert max(abs(delphi_freq[f] - everywhere[f]) for f in firings) <= 32 / tokens.size  # the tail is under a window


def test_stream_of_whole_windows_keeps_every_activation_and_the_exact_frequency():
    """Two documents (40 and 24 tokens) padded into 32-token ingest windows; at context 32 the stream is two
    full rows, nothing is dropped, and firings / cached tokens is firings / corpus tokens."""
    lengths = np.array([32, 8, 24])
    tokens = np.zeros((3, 32), dtype=np.int64)
    for row, n in enumerate(lengths):
        tokens[row, :n] = 100 * (row + 1) + np.arange(n)
    sequence, position = np.array([0, 1, 1, 2, 2]), np.array([5, 0, 7, 0, 23])
    data = SimpleNamespace(tokens=tokens, lengths=lengths, sequence=sequence, position=position)
    rows, seq, pos, kept, tail = delphi.stream_windows(data, 32)
    assert tail == 0 and kept.all() and rows.shape == (2, 32) and (rows != 0).all()
    assert rows[seq, pos].tolist() == tokens[sequence, position].tolist()
    assert (seq * 32 + pos).tolist() == [5, 32, 39, 40, 63]


@pytest.mark.parametrize("context", ["100", "16", "0", "-32", "48"])
def test_a_context_delphi_cannot_cut_is_refused_in_one_line(ingested, tmp_path, context):
    wh, _ = ingested
    out = tmp_path / "delphi"
    result = _export(wh, out, context)
    assert result.exit_code == 1
    line = refusal_line(result)
    assert f"--context {context}" in line and "multiple of 32" in line
    assert not out.exists()
    out.mkdir()  # an existing folder is left as it was
    (out / "keep.txt").write_text("mine")
    before = tree_hashes(out)
    assert _export(wh, out, context).exit_code == 1
    assert tree_hashes(out) == before


def test_delphi_latent_dataset_reads_featstores_frequency(ingested, tmp_path):
    loader = pytest.importorskip("delphi.latents.loader", reason="delphi (pip install eai-delphi) is not installed")
    from delphi.config import ConstructorConfig, SamplerConfig

    from featstore.text.tokenizer import load_tokenizer

    wh, _ = ingested
    assert _export(wh, tmp_path / "delphi").exit_code == 0
    tokens, locations, _ = _read_cache(tmp_path / "delphi" / HOOK)
    tok = load_tokenizer(wh.query("SELECT path FROM models WHERE name = 'base'").column(0)[0].as_py())
    dataset = loader.LatentDataset(tmp_path / "delphi", SamplerConfig(n_examples_train=1, n_examples_test=1, n_quantiles=1),
                                   ConstructorConfig(min_examples=1, n_non_activating=1), tokenizer=tok)
    assert tuple(dataset.tokens.shape) == tokens.shape
    latents, counts = np.unique(locations[:, 2], return_counts=True)
    expected = dict(zip(latents.tolist(), (counts / tokens.size).tolist()))
    found = {}
    for buffer in dataset.buffers:
        for data in buffer:
            record = dataset._process_latent(data)
            if record is not None:
                found[int(record.latent.latent_index)] = record.per_token_frequency
    assert found and all(found[f] == pytest.approx(expected[f]) for f in found)
