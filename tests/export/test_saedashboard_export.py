"""`featstore export-features --format saedashboard`: every feature of the batch carries every key
SAEDashboard's `NeuronpediaDashboardFeature.to_dict()` writes (the converters to a Neuronpedia upload
index all of them), filled from what the warehouse knows and checked against it here, independently."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import invoke
from safetensors.numpy import load_file
from transformers import AutoModelForCausalLM

# The keys of `NeuronpediaDashboardFeature.to_dict()` in sae-dashboard 0.8.0,
# sae_dashboard/neuronpedia/neuronpedia_dashboard.py, in its order.
FEATURE_KEYS = (
    "feature_index",
    "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
    "correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
    "correlated_features_indices", "correlated_features_l1", "correlated_features_pearson",
    "neg_str", "neg_values", "pos_str", "pos_values",
    "frac_nonzero", "freq_hist_data_bar_values", "freq_hist_data_bar_heights",
    "logits_hist_data_bar_heights", "logits_hist_data_bar_values",
    "n_prompts_total", "n_tokens_in_prompt", "dataset", "decoder_weights_dist", "activations", "vector",
)
# `NeuronpediaDashboardActivation.to_dict()` (same file), without the optional dfa_* keys.
ACTIVATION_KEYS = ("bin_min", "bin_max", "bin_contains", "tokens", "values", "qualifying_token_index")
PAIRS = [(3, 3, 1.0), (3, 5, 0.9), (3, 7, 0.4), (3, 8, 0.6), (3, 9, 0.2), (5, 3, 0.9)]  # the stored self run
BATCH_KEYS = ("model_id", "layer", "sae_set", "sae_id_suffix", "features")  # NeuronpediaDashboardBatch.to_dict()


@pytest.fixture
def batch(ingested, tmp_path):
    """tests/export/conftest.py's warehouse, one stored all_tokens correlation run of base-sae with itself, exported."""
    wh, _ = ingested
    with wh.transaction() as con:
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (1, 'base-sae', 'base-sae', 'evalset', 'all_tokens', 0.1, 100, 5)")
        con.executemany("INSERT INTO correlations VALUES (1, ?, ?, ?)",
                        PAIRS)
    out = tmp_path / "saedashboard"
    result = invoke("export-features", "base-sae", "--format", "saedashboard", "--out", str(out), "--context", "32",
                    "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    return wh, json.loads((out / "batch-0.json").read_text())


def _paths(wh):
    from featstore.models.catalog import get_model
    from featstore.saes.catalog import get_sae

    sae = get_sae(wh, "base-sae")
    return sae, get_model(wh, sae["model"])["path"]


def test_every_feature_has_every_key_of_saedashboard(batch):
    _, body = batch
    assert tuple(body) == BATCH_KEYS
    assert body["features"]
    for feature in body["features"]:
        assert tuple(feature) == FEATURE_KEYS
        for activation in feature["activations"]:
            assert tuple(activation) == ACTIVATION_KEYS


def test_vector_is_the_stored_decoder_row(batch):
    wh, body = batch
    sae, _ = _paths(wh)
    w_dec = load_file(f"{sae['path']}/sae_weights.safetensors")["W_dec"]
    for feature in body["features"]:
        assert feature["vector"] == w_dec[feature["feature_index"]].tolist()


def test_logit_tables_are_the_decoder_direction_through_the_unembedding(batch):
    wh, body = batch
    sae, model_path = _paths(wh)
    w_dec = load_file(f"{sae['path']}/sae_weights.safetensors")["W_dec"].astype(np.float64)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    down = model.model.layers[0].mlp.down_proj.weight.detach().double().numpy()  # (hidden, d_mlp): the hook is mlp.hook_post
    w_u = model.lm_head.weight.detach().double().numpy()                          # (vocab, hidden)
    for feature in body["features"]:
        effect = w_u @ (down @ w_dec[feature["feature_index"]])
        top, bottom = np.sort(effect)[::-1][:10], np.sort(effect)[:10]
        assert feature["pos_values"] == sorted(feature["pos_values"], reverse=True)
        assert feature["neg_values"] == sorted(feature["neg_values"])
        assert feature["pos_values"] == pytest.approx(top.tolist(), abs=1e-5)
        assert feature["neg_values"] == pytest.approx(bottom.tolist(), abs=1e-5)
        assert len(feature["pos_str"]) == len(feature["neg_str"]) == 10
        assert sum(feature["logits_hist_data_bar_heights"]) == len(effect)  # every token's effect, 50 bins
        assert len(feature["logits_hist_data_bar_values"]) == 50
        assert min(feature["logits_hist_data_bar_values"]) > effect.min()
        assert max(feature["logits_hist_data_bar_values"]) < effect.max()


def test_neuron_alignment_is_the_largest_decoder_weights(batch):
    wh, body = batch
    sae, _ = _paths(wh)
    w_dec = load_file(f"{sae['path']}/sae_weights.safetensors")["W_dec"]
    for feature in body["features"]:
        row = w_dec[feature["feature_index"]]
        best = np.argsort(-np.abs(row))[:3]
        assert feature["neuron_alignment_indices"] == best.tolist()
        assert feature["neuron_alignment_values"] == pytest.approx(row[best].tolist(), abs=1e-6)
        assert feature["neuron_alignment_l1"] == pytest.approx((np.abs(row[best]) / np.abs(row).sum()).tolist(), abs=1e-6)


def test_bin_max_is_the_top_of_the_activation_histogram(batch):
    wh, body = batch
    import pyarrow.parquet as pq

    table = pq.read_table(wh.partition_files("base-sae", "evalset"), columns=["feature", "act"])
    features, acts = table.column("feature").to_numpy(), table.column("act").to_numpy()
    for feature in body["features"]:
        mine = acts[features == feature["feature_index"]]
        counts, edges = np.histogram(mine, bins=50)
        assert feature["freq_hist_data_bar_heights"] == counts.tolist()
        assert feature["freq_hist_data_bar_values"] == pytest.approx(((edges[:-1] + edges[1:]) / 2).tolist(), abs=1e-5)
        for activation in feature["activations"]:
            assert activation["bin_max"] > 0
            assert activation["bin_max"] == pytest.approx(float(edges[-1])) == pytest.approx(float(mine.max()))
            assert (activation["bin_min"], activation["bin_contains"]) == (-1, -1)
        assert max(max(a["values"]) for a in feature["activations"]) == pytest.approx(float(mine.max()), abs=1e-5)


def test_correlated_features_come_from_the_stored_run(batch):
    """A run of the SAE with itself: each pair counts for both its features, a feature never matches itself."""
    _, body = batch
    by_index = {f["feature_index"]: f for f in body["features"]}
    three = by_index[3]
    assert three["correlated_features_indices"] == [5, 8, 7]  # best 3 by r
    assert three["correlated_features_pearson"] == pytest.approx([0.9, 0.6, 0.4])
    expected: dict[int, set] = {}
    for a, b, r in PAIRS:
        if a != b:
            expected.setdefault(a, set()).add((b, r))
            expected.setdefault(b, set()).add((a, r))
    for index, feature in by_index.items():
        best = sorted(expected.get(index, ()), key=lambda m: (-m[1], m[0]))[:3]
        assert feature["correlated_features_indices"] == [m for m, _ in best]
        assert feature["correlated_features_pearson"] == pytest.approx([r for _, r in best])


def test_correlated_features_of_another_sae(registered_warehouse, make_sae_folder, tmp_path):
    """With no run of the SAE with itself, its matches in the other SAE of a stored run (on either side)."""
    from featstore.saes.catalog import add_sae_folder

    wh = registered_warehouse
    add_sae_folder(wh, "other-sae", "base", make_sae_folder("other-sae"))
    assert invoke("ingest", "base", "--sae", "base-sae", "--device", "cpu", "--warehouse", str(wh.root)).exit_code == 0
    with wh.transaction() as con:
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (4, 'other-sae', 'base-sae', 'evalset', 'all_tokens', 0.1, 100, 3)")
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (5, 'base-sae', 'other-sae', 'evalset', 'cofiring', 0.1, 100, 1)")
        con.executemany("INSERT INTO correlations VALUES (?, ?, ?, ?)",
                        [(4, 3, 3, 0.8), (4, 11, 3, 0.5), (4, 3, 4, 0.7), (5, 3, 12, 0.99)])
    out = tmp_path / "other"
    result = invoke("export-features", "base-sae", "--format", "saedashboard", "--out", str(out), "--context", "32",
                    "--features", "3,4", "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    three, four = json.loads((out / "batch-0.json").read_text())["features"]
    assert three["correlated_features_indices"] == [3, 11]  # other-sae's features; the cofiring run is not Pearson over all tokens
    assert three["correlated_features_pearson"] == pytest.approx([0.8, 0.5])
    assert four["correlated_features_indices"] == [3]


def test_keys_with_nothing_to_say_are_empty_lists(batch):
    _, body = batch
    for feature in body["features"]:
        for key in ("correlated_neurons_indices", "correlated_neurons_l1", "correlated_neurons_pearson",
                    "correlated_features_l1", "decoder_weights_dist"):
            assert feature[key] == []


def test_saedashboard_reads_the_batch_back_unchanged(batch):
    """With SAEDashboard installed, its reader keeps every key and value (nothing is filled in for us)."""
    dashboard = pytest.importorskip("sae_dashboard.neuronpedia.neuronpedia_dashboard")
    _, body = batch
    assert dashboard.NeuronpediaDashboardBatch(**body).to_dict() == body


def test_no_correlation_run_leaves_the_correlations_empty(registered_warehouse, tmp_path):
    wh = registered_warehouse
    assert invoke("ingest", "base", "--sae", "base-sae", "--device", "cpu", "--warehouse", str(wh.root)).exit_code == 0
    out = tmp_path / "plain"
    result = invoke("export-features", "base-sae", "--format", "saedashboard", "--out", str(out), "--context", "32",
                    "--features", "3", "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    (feature,) = json.loads((out / "batch-0.json").read_text())["features"]
    assert feature["correlated_features_indices"] == feature["correlated_features_pearson"] == []
    assert len(feature["vector"]) == 64 and len(feature["pos_values"]) == 10


def test_torch_matches_numpy_for_the_down_projection():
    """The export takes a linear map's effect as module(x) - module(0): equal to x @ W.T for nn.Linear."""
    layer = torch.nn.Linear(4, 3)
    x = torch.randn(2, 4)
    assert torch.allclose(layer(x) - layer(torch.zeros_like(x)), x @ layer.weight.T, atol=1e-6)
