"""SAEDashboard's per-feature data: the batch JSON its Neuronpedia runner writes, its
`NeuronpediaDashboardBatch` class reads back, and the converters to a Neuronpedia upload read
(SAEDashboard 0.8.0, `sae_dashboard/neuronpedia/neuronpedia_dashboard.py`,
`NeuronpediaDashboardFeature.to_dict`): every feature carries all 25 keys of that `to_dict`.

Filled from what featstore has, with SAEDashboard's conventions (`neuronpedia_converter.py`,
`sae_vis_runner.py`, `data_parsing_fns.py`):
  vector                     the SAE's decoder row W_dec[f]
  pos_/neg_str, _values      the 10 tokens the decoder direction raises / lowers most through the
                             unembedding: W_dec[f] (through the MLP down projection for an MLP-hidden SAE)
                             @ W_U, the model's output embedding (no final norm), largest first / most
                             negative first
  logits_hist_data_bar_*     a 50-bin histogram of those effects over the whole vocabulary (bin centres)
  freq_hist_data_bar_*       a 50-bin histogram of the feature's non-zero activations (bin centres)
  neuron_alignment_*         the 3 input units (MLP neurons for an MLP-hidden SAE) with the largest
                             |W_dec[f]|: index, signed weight, share of the row's L1 norm
  correlated_features_*      the 3 best-correlated features from a stored all_tokens correlation run
                             (`sql/queries/export/viewer_correlations.sql`): indices and Pearson r
  activations                the top sequences, as SAEDashboard's "TOP ACTIVATIONS" group: bin_min and
                             bin_contains -1, bin_max the feature's largest activation (the top edge of
                             its activation histogram)
Left empty, as SAEDashboard leaves them when it has nothing: correlated_neurons_* (featstore keeps no
neuron-feature correlations), correlated_features_l1 (SAEDashboard puts activation cosines there;
featstore stores none), decoder_weights_dist (SAEDashboard fills it for attention SAEs only).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

BATCH = 128           # features per batch file, as SAEDashboard splits its output
N_LOGITS = 10         # rows of the logit tables (SAEDashboard's LogitsTableConfig.n_rows)
N_TABLE_ROWS = 3      # rows of the neuron-alignment and correlation tables (FeatureTablesConfig.n_rows)
N_HIST_BINS = 50      # bins of both histograms (ActsHistogramConfig / LogitsHistogramConfig.n_bins)
OUT_OF_RANGE = "<|outofrange|>"  # SAEDashboard's text for a token id outside the vocabulary


def histogram(values: np.ndarray, bins: int = N_HIST_BINS) -> tuple[list[float], list[int]]:
    """(bin centres, counts) of `values` over [min, max] in equal bins, as SAEDashboard's
    `HistogramData.from_data` (torch.histc): empty lists for no values."""
    if not len(values):
        return [], []
    counts, edges = np.histogram(values.astype(np.float64), bins=bins)
    return [round(float(c), 5) for c in (edges[:-1] + edges[1:]) / 2], [int(c) for c in counts]


class Directions:
    """The SAE's decoder rows and their effects on the logits, loaded once per export."""

    def __init__(self, data):
        import torch

        from featstore.models.hf import load_model
        from featstore.models.layouts import hook_site, parse_hook
        from featstore.saes import load_sae

        with torch.no_grad():
            sae = load_sae(data.sae["path"])
            self.w_dec = sae.W_dec.detach().float()
            self.model = load_model(data.model_path)
            _, kind = parse_hook(data.sae["hook_point"])
            # an MLP-hidden SAE writes to the residual stream through the layer's down projection
            self.down = hook_site(self.model, data.sae["hook_point"]).module if kind == "mlp.hook_post" else None
            self.w_u = self.model.get_output_embeddings().weight.detach().float()  # (vocab, hidden)

    def logits(self, features: list[int]) -> np.ndarray:
        """(len(features), vocab): each decoder row's direct effect on the logits."""
        import torch

        with torch.no_grad():
            rows = self.w_dec[features].to(self.w_u.dtype)
            if self.down is not None:
                param = next(self.down.parameters())
                rows = rows.to(param.dtype)
                rows = (self.down(rows) - self.down(torch.zeros_like(rows))).float()  # linear part only, no bias
            return (rows @ self.w_u.T).cpu().numpy()


def correlated(wh, data) -> dict[int, tuple[list[int], list[float]]]:
    """feature -> (indices, Pearson r) of its best-correlated features from the stored correlations."""
    if wh is None:
        return {}
    table = wh.named("export/viewer_correlations", sae=data.sae["id"], corpus=data.corpus, k=N_TABLE_ROWS).to_pylist()
    out: dict[int, tuple[list[int], list[float]]] = {}
    for row in table:
        indices, values = out.setdefault(int(row["feature"]), ([], []))
        indices.append(int(row["match"]))
        values.append(round(float(row["r"]), 6))
    return out


def _alignment(row: np.ndarray) -> tuple[list[int], list[float], list[float]]:
    """The N_TABLE_ROWS input units with the largest |weight| in a decoder row: index, weight, L1 share."""
    order = np.argsort(-np.abs(row), kind="stable")[:N_TABLE_ROWS]
    l1 = float(np.abs(row).sum()) or 1.0
    return ([int(i) for i in order], [round(float(row[i]), 6) for i in order],
            [round(float(abs(row[i])) / l1, 6) for i in order])


def _token_texts(data, ids: np.ndarray) -> list[str]:
    return [data.vocab.get(int(i), OUT_OF_RANGE) for i in ids]


def feature_dict(data, feature: int, vector: np.ndarray, logits: np.ndarray,
                 correlations: dict[int, tuple[list[int], list[float]]]) -> dict:
    acts = data.act[data.rows_of(feature)]
    centres, heights = histogram(acts)
    bin_max = float(acts.max()) if len(acts) else 0.0
    activations = []
    for seq in data.top_sequences(feature):
        values = data.values(feature, seq)
        activations.append({"bin_min": -1, "bin_max": bin_max, "bin_contains": -1, "tokens": data.texts(seq),
                            "values": values.round(6).tolist(), "qualifying_token_index": int(values.argmax())})
    top = np.argsort(-logits, kind="stable")[:N_LOGITS]
    bottom = np.argsort(logits, kind="stable")[:N_LOGITS]
    logit_centres, logit_heights = histogram(logits)
    indices, weights, l1_share = _alignment(vector)
    corr_indices, corr_r = correlations.get(feature, ([], []))
    return {
        "feature_index": feature,
        "neuron_alignment_indices": indices, "neuron_alignment_values": weights, "neuron_alignment_l1": l1_share,
        "correlated_neurons_indices": [], "correlated_neurons_l1": [], "correlated_neurons_pearson": [],
        "correlated_features_indices": corr_indices, "correlated_features_l1": [],
        "correlated_features_pearson": corr_r,
        "neg_str": _token_texts(data, bottom), "neg_values": [round(float(v), 6) for v in logits[bottom]],
        "pos_str": _token_texts(data, top), "pos_values": [round(float(v), 6) for v in logits[top]],
        "frac_nonzero": len(acts) / data.n_tokens,
        "freq_hist_data_bar_values": centres, "freq_hist_data_bar_heights": heights,
        "logits_hist_data_bar_heights": logit_heights, "logits_hist_data_bar_values": logit_centres,
        "n_prompts_total": len(data.lengths), "n_tokens_in_prompt": int(data.tokens.shape[1]),
        "dataset": data.corpus,
        "decoder_weights_dist": [],
        "activations": activations,
        "vector": vector.tolist(),
    }


def write(data, out: Path, features: list[int]) -> int:
    batches = [features[i : i + BATCH] for i in range(0, len(features), BATCH)] or [[]]
    directions = Directions(data)
    correlations = correlated(data.wh, data)
    for number, batch in enumerate(batches):
        logits = directions.logits(batch) if batch else np.zeros((0, 0))
        rows = directions.w_dec[batch].numpy() if batch else np.zeros((0, 0))
        body = {"model_id": data.sae["model"], "layer": int(data.sae["layer"]), "sae_set": data.sae["id"],
                "sae_id_suffix": None,
                "features": [feature_dict(data, f, rows[i], logits[i], correlations) for i, f in enumerate(batch)]}
        (out / f"batch-{number}.json").write_text(json.dumps(body) + "\n")
    return len(batches)
