"""Neuronpedia's feature JSON, one file per feature, shaped as its feature API serves a feature
(GET /api/feature/{modelId}/{layer}/{index}): `modelId`, `layer` (the SAE's id on Neuronpedia),
`index`, `activations` (top examples: `tokens`, `values`, `maxValue`, `maxValueTokenIndex`),
`explanations` (`description`, `explanationModelName`, `typeName`), `frac_nonzero`, `maxActApprox`
and the activation-density histogram `freq_hist_data_bar_values` / `freq_hist_data_bar_heights`.
Checked against that documented shape (Neuronpedia has no installable loader).
"""

from __future__ import annotations

import json
from pathlib import Path


def feature_json(data, feature: int) -> dict:
    examples = []
    for seq in data.top_sequences(feature):
        values = data.values(feature, seq)
        top = int(values.argmax())
        examples.append({"tokens": data.texts(seq), "values": values.round(6).tolist(),
                         "maxValue": float(values[top]), "maxValueTokenIndex": top})
    centres, heights = data.histogram(feature)
    explanation = data.explanations.get(feature)
    rows = data.rows_of(feature)
    return {
        "modelId": data.sae["model"],
        "layer": data.sae["id"],
        "index": str(feature),
        "hookName": data.sae["hook_point"],
        "activations": examples,
        "explanations": [{"description": explanation[0], "explanationModelName": explanation[1], "typeName": "featstore"}]
        if explanation else [],
        "frac_nonzero": len(rows) / data.n_tokens,
        "maxActApprox": float(data.act[rows].max()) if len(rows) else 0.0,
        "freq_hist_data_bar_values": centres,
        "freq_hist_data_bar_heights": heights,
    }


def write(data, out: Path, features: list[int]) -> int:
    for feature in features:
        (out / f"{feature}.json").write_text(json.dumps(feature_json(data, feature)) + "\n")
    return len(features)
