"""SAEDashboard's per-feature data: the batch JSON its Neuronpedia runner writes and its
`NeuronpediaDashboardBatch` class reads back (model_id, layer, sae_set, features with
`feature_index`, `frac_nonzero`, `freq_hist_data_bar_values` / `_heights`, and `activations`, each
with `tokens`, `values`, `bin_min`, `bin_max`, `bin_contains`, `qualifying_token_index`).
featstore stores no logits or neuron alignments, so those lists stay empty.
"""

from __future__ import annotations

import json
from pathlib import Path

BATCH = 128  # features per batch file, as SAEDashboard splits its output


def feature_dict(data, feature: int) -> dict:
    centres, heights = data.histogram(feature)
    activations = []
    for seq in data.top_sequences(feature):
        values = data.values(feature, seq)
        activations.append({"bin_min": -1, "bin_max": -1, "bin_contains": -1, "tokens": data.texts(seq),
                            "values": values.round(6).tolist(), "qualifying_token_index": int(values.argmax())})
    return {"feature_index": feature, "frac_nonzero": len(data.rows_of(feature)) / data.n_tokens,
            "freq_hist_data_bar_values": centres, "freq_hist_data_bar_heights": [float(h) for h in heights],
            "n_prompts_total": int(len(data.lengths)), "n_tokens_in_prompt": int(data.tokens.shape[1]),
            "dataset": data.corpus, "activations": activations}


def write(data, out: Path, features: list[int]) -> int:
    batches = [features[i : i + BATCH] for i in range(0, len(features), BATCH)] or [[]]
    for number, batch in enumerate(batches):
        body = {"model_id": data.sae["model"], "layer": int(data.sae["layer"]), "sae_set": data.sae["id"],
                "sae_id_suffix": None, "features": [feature_dict(data, f) for f in batch]}
        (out / f"batch-{number}.json").write_text(json.dumps(body) + "\n")
    return len(batches)
