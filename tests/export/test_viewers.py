"""`featstore export-features`: delphi's latent cache and SAEDashboard's batch JSON, each read back and
compared with the stored activations. delphi's and SAEDashboard's own loaders read the files where those
packages are installed. Neuronpedia's import layout and upload-batch bodies are checked against the rules
of Neuronpedia's code in tests/export/test_neuronpedia_export.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import invoke

from featstore.activations.ingest import windows


def _export(wh, fmt, tmp_path, *extra):
    out = tmp_path / fmt
    result = invoke("export-features", "base-sae", "--format", fmt, "--out", str(out), "--context", "32", *extra,
                    "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    return out


def _placed(wh, stored: dict) -> dict[tuple[int, int, int], float]:
    """The stored rows keyed by (sequence, position, feature) of delphi's 32-token rows: the corpus's tokens
    as one stream cut into rows, the ragged tail (and its rows) left out."""
    stream = np.concatenate([toks for toks, _ in windows(wh, "evalset", 32)])
    cut = len(stream) // 32 * 32
    where = {int(tok): divmod(i, 32) for i, tok in enumerate(stream[:cut].tolist())}
    return {(*where[t], f): a for (t, f), a in stored.items() if t in where}


def test_delphi_cache_holds_every_stored_activation(ingested, tmp_path):
    wh, stored = ingested
    module = _export(wh, "delphi", tmp_path) / "blocks.0.mlp.hook_post"
    config = json.loads((module / "config.json").read_text())
    assert config["model_name"] == wh.query("SELECT path FROM models WHERE name = 'base'").column(0)[0].as_py()
    splits = sorted(module.glob("*.safetensors"), key=lambda p: int(p.stem.split("_")[0]))
    assert [p.stem for p in splits] == ["0_2", "3_5", "6_8", "9_11", "12_15"]  # torch.linspace(0, 16, 6) edges
    try:
        from delphi.latents.loader import TensorBuffer
    except ImportError:  # the documented layout, read with safetensors alone
        TensorBuffer = None
    found = {}
    for path in splits:
        if TensorBuffer is not None:
            locations, activations, tokens = (x.numpy() if x is not None else None for x in TensorBuffer(str(path), module.name).load())
        else:
            from safetensors.numpy import load_file

            split = load_file(str(path))
            locations, activations, tokens = split["locations"].astype(np.int64), split["activations"], split["tokens"]
            locations[:, 2] += int(path.stem.split("_")[0])
        assert tokens.shape[1] == 32
        found.update({tuple(loc): float(a) for loc, a in zip(locations.tolist(), activations.tolist())})
    expected = _placed(wh, stored)
    assert found.keys() == expected.keys()
    assert max(abs(found[k] - expected[k]) / max(1.0, abs(expected[k])) for k in expected) < 1e-3  # float16, as delphi stores


def test_delphi_dataset_loads_the_cache_when_delphi_is_installed(ingested, tmp_path):
    loader = pytest.importorskip("delphi.latents.loader", reason="delphi (pip install eai-delphi) is not installed")
    from delphi.config import ConstructorConfig, SamplerConfig

    from featstore.text.tokenizer import load_tokenizer

    wh, stored = ingested
    out = _export(wh, "delphi", tmp_path)
    tok = load_tokenizer(wh.query("SELECT path FROM models WHERE name = 'base'").column(0)[0].as_py())
    dataset = loader.LatentDataset(out, SamplerConfig(), ConstructorConfig(), tokenizer=tok)
    assert len(dataset.buffers) == 5 and dataset.tokens.shape[1] == 32
    latents = {int(d.latent.latent_index) for buffer in dataset.buffers for d in buffer}
    assert latents == {f for _, f in stored}


def test_saedashboard_batch_loads_in_saedashboard(ingested, tmp_path):
    wh, stored = ingested
    out = _export(wh, "saedashboard", tmp_path)
    body = json.loads((out / "batch-0.json").read_text())
    try:
        from sae_dashboard.neuronpedia.neuronpedia_dashboard import (
            NeuronpediaDashboardBatch,
        )
    except ImportError:
        NeuronpediaDashboardBatch = None
    if NeuronpediaDashboardBatch is not None:  # SAEDashboard's own reader of its batch files
        read = NeuronpediaDashboardBatch(**body).to_dict()["features"]  # fills the fields featstore leaves out
        assert [{key: f[key] for key in given} for f, given in zip(read, body["features"])] == body["features"]
    assert [f["feature_index"] for f in body["features"]] == sorted({f for _, f in stored})
    first = body["features"][0]
    acts = [a for (_, f), a in stored.items() if f == first["feature_index"]]
    assert max(max(a["values"]) for a in first["activations"]) == pytest.approx(max(acts))


def test_unknown_corpus_and_format_are_one_line_errors(ingested, tmp_path):
    wh, _ = ingested
    result = invoke("export-features", "base-sae", "--format", "delphi", "--corpus", "nope", "--warehouse",
                    str(wh.root))
    assert result.exit_code == 1 and "no activations for SAE 'base-sae' on corpus 'nope'" in result.output
