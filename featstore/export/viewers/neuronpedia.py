"""Neuronpedia: an SAE as one Neuronpedia *source*, in the two forms a Neuronpedia instance takes in.

`--format neuronpedia` writes the import layout its admin import reads (webapp `app/api/admin/import/
route.ts` -> `lib/db/import.ts`; the layout its own `utils/neuronpedia-utils/.../export-data.py` and
`convert-saedashboard-to-neuronpedia-export.py` write), rooted where the dataset bucket's keys start:

    <out>/v1/<modelId>/<sourceId>/model.jsonl        one Model row      (prisma.model.create, kept if present)
                                 /sourceset.jsonl    one SourceSet row  (prisma.sourceSet.create)
                                 /source.jsonl       one Source row     (prisma.source.create)
                                 /features/batch-N.jsonl.gz      Neuron rows       } each line inserted by
                                 /activations/batch-N.jsonl.gz   Activation rows   } jsonb_to_recordset, the
                                 /explanations/batch-N.jsonl.gz  Explanation rows  } columns of the first line

`sourceId` is `<layer>-<sourceSet>` (`lib/utils/source.ts`: the layer before the first '-', the source set
after it, nothing after a '__'), the source set the SAE's id (lowercase, [a-z0-9-]), `modelId` the model's
name (lowercase, [a-z0-9_-], the Model id rule). The rows carry every column Neuronpedia's schema
(`prisma/schema.prisma`) declares NOT NULL without a database default, including the ids Prisma would
make client-side (`@default(cuid())`), since the importer inserts with SQL: deterministic 25-character
ids from (model, source, feature, rank, corpus), so importing twice inserts nothing new (ON CONFLICT DO
NOTHING). The creator and author is the bot user Neuronpedia's `prisma/seed.ts` creates in every instance.
The feature columns (decoder vector, logit tables and histogram through the unembedding, neuron alignment,
correlated features, 50-bin activation histogram) are SAEDashboard's (`saedashboard.feature_dict`), mapped
to Neuron columns as Neuronpedia's converter maps them; the examples are the top sequences. Explanations
go in with no `typeName` / `explanationModelName` (foreign keys to Neuronpedia's registered types, which
featstore's explainers are not; the explainer is in `notes`) and no embedding.

`--format neuronpedia-api` writes the request bodies of its authenticated upload route
(`app/api/feature/upload-batch/route.tsx`, POST with `x-api-key`): `batch-N.json`, each
`{modelId, source, features: [...]}` with at most 128 features, for a source set the key's user created.
That route takes fewer fields (density, top/bottom logits, explanations, activations); a feature without
an example cannot go in it (it requires one) and is left out.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from featstore.errors import FeatstoreError
from featstore.export.viewers import saedashboard

BATCH = 128                 # features per batch file (and the upload route's maximum per request)
CREATOR_ID = "clkht01d40000jv08hvalcvly"  # the 'bot' user of Neuronpedia's prisma/seed.ts
CREATOR_NAME = "featstore"
VISIBILITY = "PUBLIC"       # as Neuronpedia's converter writes its sources (schema default: PRIVATE)
MAX_TOKENS = 1024           # the upload route's limit on an example's tokens
MAX_EXPLANATION = 512       # ... and on an explanation's text
MAX_LOGITS = 20             # ... and on topLogits / bottomLogits
EMPTY_TOKEN = "\u200b"      # the upload route refuses an empty token string (yup required)


def model_id(data) -> str:
    """The Neuronpedia Model id: the featstore model's name, lowercase, only [a-z0-9_-]."""
    return re.sub(r"[^a-z0-9_-]+", "-", data.sae["model"].lower()).strip("-") or "model"


def source_set(data) -> str:
    """The source set's name: the SAE's id, lowercase [a-z0-9-] (no '__', Neuronpedia's suffix delimiter)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]+", "-", data.sae["id"].lower())).strip("-") or "sae"


def source_id(data) -> str:
    return f"{int(data.sae['layer'])}-{source_set(data)}"


def _id(*parts) -> str:
    """A cuid-shaped (25 characters, 'c' first) id that is the same on every export of the same thing."""
    return "c" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:24]


def _batches(features: list[int]) -> list[list[int]]:
    return [features[i : i + BATCH] for i in range(0, len(features), BATCH)]


def _dashboard(data, features: list[int]):
    """SAEDashboard's feature dicts, batch by batch: the decoder rows through the unembedding, computed once."""
    directions = saedashboard.Directions(data)
    correlations = saedashboard.correlated(data.wh, data)
    for batch in _batches(features):
        logits = directions.logits(batch)
        rows = directions.w_dec[batch].numpy()
        yield directions, [saedashboard.feature_dict(data, f, rows[i], logits[i], correlations) for i, f in enumerate(batch)]


def feature_rows(data, dash: dict) -> tuple[dict, list[dict], list[dict]]:
    """(Neuron row, Activation rows, Explanation rows) of one feature from its SAEDashboard dict."""
    model, source, feature = model_id(data), source_id(data), int(dash["feature_index"])
    index = str(feature)
    activations = []
    for rank, example in enumerate(dash["activations"]):
        values = [float(v) for v in example["values"]]
        top = int(np.argmax(values))
        activations.append({
            "id": _id(model, source, index, rank, data.corpus), "modelId": model, "layer": source, "index": index,
            "creatorId": CREATOR_ID, "tokens": list(example["tokens"]), "values": values,
            "maxValue": values[top], "maxValueTokenIndex": top, "minValue": min(values),
            "dataSource": f"featstore:{data.corpus}", "dataIndex": None,
            "dfaValues": [], "dfaTargetIndex": None, "dfaMaxValue": None, "lossValues": [], "logitContributions": None,
            "binMin": float(example["bin_min"]), "binMax": float(example["bin_max"]),
            "binContains": float(example["bin_contains"]), "qualifyingTokenIndex": int(example["qualifying_token_index"]),
        })
    max_act = max((a["maxValue"] for a in activations), default=0.0)
    vector = [float(v) for v in dash["vector"]]
    neuron = {
        "modelId": model, "layer": source, "index": index, "sourceSetName": source_set(data), "creatorId": CREATOR_ID,
        "maxActApprox": max_act, "hasVector": bool(vector), "vector": vector, "vectorLabel": None,
        "vectorDefaultSteerStrength": max_act, "hookName": data.sae["hook_point"],
        "topkCosSimIndices": [], "topkCosSimValues": [],
        **{key: dash[key] for key in (
            "neuron_alignment_indices", "neuron_alignment_values", "neuron_alignment_l1",
            "correlated_neurons_indices", "correlated_neurons_pearson", "correlated_neurons_l1",
            "correlated_features_indices", "correlated_features_pearson", "correlated_features_l1",
            "neg_str", "neg_values", "pos_str", "pos_values", "frac_nonzero",
            "freq_hist_data_bar_heights", "freq_hist_data_bar_values",
            "logits_hist_data_bar_heights", "logits_hist_data_bar_values", "decoder_weights_dist")},
    }
    neuron["frac_nonzero"] = float(neuron["frac_nonzero"])
    explanations = []
    if feature in data.explanations:
        text, explainer = data.explanations[feature]
        explanations.append({
            "id": _id(model, source, index, "explanation", explainer, data.corpus), "modelId": model, "layer": source,
            "index": index, "description": text, "authorId": CREATOR_ID, "typeName": None,
            "explanationModelName": None, "notes": f"featstore explainer {explainer} on corpus {data.corpus}",
        })
    return neuron, activations, explanations


def metadata_rows(data, model_config) -> dict[str, dict]:
    """The Model, SourceSet and Source rows (the fields of `prisma.<model>.create`, nothing else)."""
    model, sae = model_id(data), data.sae
    path = str(data.model_path)
    owner = path.split("/")[0] if "/" in path and not Path(path).exists() else CREATOR_NAME  # a hub id's org
    return {
        "model.jsonl": {
            "id": model, "displayName": sae["model"], "displayNameShort": sae["model"], "creatorId": CREATOR_ID,
            "layers": int(model_config.num_hidden_layers), "dimension": int(model_config.hidden_size),
            "neuronsPerLayer": int(getattr(model_config, "intermediate_size", 0) or 0),
            "owner": owner, "visibility": VISIBILITY, "inferenceEnabled": False, "instruct": False,
        },
        "sourceset.jsonl": {
            "modelId": model, "name": source_set(data), "creatorId": CREATOR_ID, "creatorName": CREATOR_NAME,
            "description": f"{sae['hook_point']} - {sae['d_sae']} ({sae['architecture']} SAE {sae['id']})",
            "urls": [], "visibility": VISIBILITY, "hasDashboards": True, "showCorrelated": False,
        },
        "source.jsonl": {
            "id": source_id(data), "modelId": model, "setName": source_set(data), "creatorId": CREATOR_ID,
            "hasDashboards": True, "inferenceEnabled": False, "visibility": VISIBILITY,
            "num_prompts": len(data.lengths), "num_tokens_in_prompt": int(data.tokens.shape[1]),
            "dataset": data.corpus, "notes": f"featstore SAE {sae['id']} ({sae['hook_point']}), examples from corpus {data.corpus}",
        },
    }


def _jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
    path.write_bytes(gzip.compress(body.encode(), compresslevel=5))


def write(data, out: Path, features: list[int]) -> int:
    """The import layout under `out/v1/<modelId>/<sourceId>/`; returns the number of files."""
    root = out / "v1" / model_id(data) / source_id(data)
    root.mkdir(parents=True, exist_ok=True)
    written, config = 0, None
    for number, (directions, dashes) in enumerate(_dashboard(data, features)):
        config = directions.model.config
        rows = [feature_rows(data, d) for d in dashes]
        for folder, part in (("features", [[n] for n, _, _ in rows]), ("activations", [a for _, a, _ in rows]),
                             ("explanations", [e for _, _, e in rows])):
            lines = [row for group in part for row in group]
            if lines:  # the importer reads a file's columns from its first line: no empty files
                _jsonl_gz(root / folder / f"batch-{number}.jsonl.gz", lines)
                written += 1
    if config is None:  # no feature chosen: the model's shape still names the source
        config = saedashboard.Directions(data).model.config
    for name, row in metadata_rows(data, config).items():
        (root / name).write_text(json.dumps(row) + "\n")
        written += 1
    return written


def upload_feature(data, dash: dict) -> dict | None:
    """One feature of an upload-batch request (None when it has no example: the route requires one)."""
    if not dash["activations"]:
        return None
    feature = int(dash["feature_index"])
    body = {
        "index": feature, "density": min(1.0, max(0.0, float(dash["frac_nonzero"]))),
        "topLogits": [{"token": t or EMPTY_TOKEN, "value": v} for t, v in zip(dash["pos_str"], dash["pos_values"])][:MAX_LOGITS],
        "bottomLogits": [{"token": t or EMPTY_TOKEN, "value": v} for t, v in zip(dash["neg_str"], dash["neg_values"])][:MAX_LOGITS],
        "activations": [{"tokens": [t or EMPTY_TOKEN for t in a["tokens"]], "values": [float(v) for v in a["values"]],
                         "quantileMax": float(a["bin_max"])} for a in dash["activations"]],
        "explanations": [],
    }
    if feature in data.explanations:
        text = data.explanations[feature][0].strip()[:MAX_EXPLANATION]
        if text:
            body["explanations"] = [{"text": text, "methodName": None, "modelName": None}]
    return body


def check_context(context: int) -> None:
    """Refuse example windows longer than the upload route takes."""
    if context > MAX_TOKENS:
        raise FeatstoreError(f"--context {context} is longer than the {MAX_TOKENS} tokens Neuronpedia's upload route "
                             f"takes per example; give --context {MAX_TOKENS} or less")


def write_api(data, out: Path, features: list[int]) -> int:
    """The upload-batch request bodies `out/batch-N.json`; returns the number of files."""
    check_context(int(data.tokens.shape[1]))
    written = 0
    for _, dashes in _dashboard(data, features):
        chosen = [f for f in (upload_feature(data, d) for d in dashes) if f is not None]
        if chosen:
            body = {"modelId": model_id(data), "source": source_id(data), "features": chosen}
            (out / f"batch-{written}.json").write_text(json.dumps(body, allow_nan=False) + "\n")
            written += 1
    return written
