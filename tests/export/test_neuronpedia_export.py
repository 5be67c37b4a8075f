"""`featstore export-features --format neuronpedia` / `neuronpedia-api`: Neuronpedia's import layout and
its upload-batch request bodies, checked against the rules of Neuronpedia's own code. Neuronpedia (a
Next.js app on PostgreSQL) cannot run here, so these rules, transcribed from its source, are the check.

Read at hijohnnylin/neuronpedia commit ebb8426fc550ad5d1f76d52c271a624af3c08a57:
  apps/webapp/prisma/schema.prisma                   models Model, SourceSet, Source, Neuron, Activation, Explanation
  apps/webapp/prisma/migrations/*/migration.sql      which defaults are database defaults
  apps/webapp/app/api/admin/import/route.ts          the files it reads and in which order
  apps/webapp/lib/db/import.ts                       importJsonlString: columns from the first line, jsonb_to_recordset
  apps/webapp/lib/utils/s3.ts                        bucket keys v1/<model>/<source>/, getFilesInPath, gunzip
  apps/webapp/lib/utils/source.ts                    <layer>-<sourceSet>[__suffix]
  apps/webapp/prisma/seed.ts                         the 'bot' user every instance has
  apps/webapp/app/api/feature/upload-batch/route.tsx the upload route's yup schema
  utils/neuronpedia-utils/neuronpedia_utils/convert-saedashboard-to-neuronpedia-export.py  its own writer
"""

from __future__ import annotations

import gzip
import json
import math

import pytest
from helpers import invoke

from featstore.export.viewers import saedashboard

COMMIT = "ebb8426fc550ad5d1f76d52c271a624af3c08a57"

# schema.prisma: the scalar columns of each model, as (type, required). `required` = NOT NULL without a
# database default: a `?` type is nullable; `@default(...)` is a database default except `cuid()` (Prisma
# makes it in the client, and import.ts inserts with SQL, so `id` must be in the row: the migrations have
# `"id" TEXT NOT NULL` with no DEFAULT); `@updatedAt` alone is client-side too.
NEURON = {
    "modelId": ("String", True), "layer": ("String", True), "index": ("String", True),
    "sourceSetName": ("String?", False), "creatorId": ("String?", False), "createdAt": ("DateTime", False),
    "maxActApprox": ("Float?", False), "hasVector": ("Boolean", False), "vector": ("Float[]", False),
    "vectorLabel": ("String?", False), "vectorDefaultSteerStrength": ("Float?", False), "hookName": ("String?", False),
    "topkCosSimIndices": ("Int[]", False), "topkCosSimValues": ("Float[]", False),
    "neuron_alignment_indices": ("Int[]", False), "neuron_alignment_values": ("Float[]", False),
    "neuron_alignment_l1": ("Float[]", False), "correlated_neurons_indices": ("Int[]", False),
    "correlated_neurons_pearson": ("Float[]", False), "correlated_neurons_l1": ("Float[]", False),
    "correlated_features_indices": ("Int[]", False), "correlated_features_pearson": ("Float[]", False),
    "correlated_features_l1": ("Float[]", False), "neg_str": ("String[]", False), "neg_values": ("Float[]", False),
    "pos_str": ("String[]", False), "pos_values": ("Float[]", False), "frac_nonzero": ("Float", False),
    "freq_hist_data_bar_heights": ("Float[]", False), "freq_hist_data_bar_values": ("Float[]", False),
    "logits_hist_data_bar_heights": ("Float[]", False), "logits_hist_data_bar_values": ("Float[]", False),
    "decoder_weights_dist": ("Float[]", False), "umap_cluster": ("Int?", False),
    "umap_log_feature_sparsity": ("Float?", False), "umap_x": ("Float?", False), "umap_y": ("Float?", False),
}
ACTIVATION = {
    "id": ("String", True), "tokens": ("String[]", True), "dataIndex": ("String?", False), "index": ("String", True),
    "layer": ("String", True), "modelId": ("String", True), "dataSource": ("String?", False),
    "maxValue": ("Float", True), "maxValueTokenIndex": ("Int", True), "minValue": ("Float", True),
    "values": ("Float[]", True), "dfaValues": ("Float[]", False), "dfaTargetIndex": ("Int?", False),
    "dfaMaxValue": ("Float?", False), "zQIndices": ("Int[]", False), "zKIndices": ("Int[]", False),
    "zValues": ("Float[]", False), "creatorId": ("String", True), "createdAt": ("DateTime", False),
    "lossValues": ("Float[]", False), "logitContributions": ("String?", False), "binMin": ("Float?", False),
    "binMax": ("Float?", False), "binContains": ("Float?", False), "qualifyingTokenIndex": ("Int?", False),
}  # tokens and values: nullable in the migration (`TEXT[]`) but an example without them shows nothing
EXPLANATION = {
    "id": ("String", True), "modelId": ("String", True), "layer": ("String", True), "index": ("String", True),
    "embedding": ("Unsupported", False), "description": ("String", True), "authorId": ("String", True),
    "triggeredByUserId": ("String?", False), "notes": ("String?", False), "scoreV1": ("Float", False),
    "scoreV2": ("Float?", False), "umap_x": ("Float?", False), "umap_y": ("Float?", False),
    "umap_cluster": ("Int?", False), "umap_log_feature_sparsity": ("Float?", False), "typeName": ("String?", False),
    "explanationModelName": ("String?", False), "createdAt": ("DateTime", False), "updatedAt": ("DateTime", False),
}
# The metadata rows go through `prisma.<model>.create({data: line})` (admin/import/route.ts), which refuses
# an unknown field, so their keys must be fields; these are required there (no @default, not optional).
MODEL = {"id": ("String", True), "displayNameShort": ("String", False), "displayName": ("String", False),
         "creatorId": ("String", True), "tlensId": ("String?", False), "openRouterId": ("String?", False),
         "dimension": ("Int?", False), "thinking": ("Boolean", False), "visibility": ("Visibility", False),
         "defaultSourceSetName": ("String?", False), "defaultSourceId": ("String?", False),
         "defaultGraphSourceSetName": ("String?", False), "inferenceEnabled": ("Boolean", False),
         "instruct": ("Boolean", False), "layers": ("Int", True), "neuronsPerLayer": ("Int", True),
         "createdAt": ("DateTime", False), "owner": ("String", True), "updatedAt": ("DateTime", False),
         "website": ("String?", False)}
SOURCE_SET = {"modelId": ("String", True), "name": ("String", True), "hasDashboards": ("Boolean", False),
              "allowInferenceSearch": ("Boolean", False), "visibility": ("Visibility", False),
              "description": ("String", True), "type": ("String", False), "creatorName": ("String", True),
              "urls": ("String[]", True), "creatorEmail": ("String?", False), "creatorId": ("String", True),
              "releaseName": ("String?", False), "hasGraphs": ("Boolean", False), "graphEnabled": ("Boolean", False),
              "similarityMatrixEnabled": ("Boolean", False), "defaultOfModelId": ("String?", False),
              "defaultGraphModelId": ("String?", False), "defaultRange": ("Int", False),
              "defaultShowBreaks": ("Boolean", False), "showDfa": ("Boolean", False),
              "showCorrelated": ("Boolean", False), "showHeadAttribution": ("Boolean", False),
              "showUmap": ("Boolean", False), "createdAt": ("DateTime", False)}
SOURCE = {"id": ("String", True), "modelId": ("String", True), "hasDashboards": ("Boolean", False),
          "inferenceEnabled": ("Boolean", False), "saelensConfig": ("Json?", False),
          "saelensRelease": ("String?", False), "saelensSaeId": ("String?", False), "hfRepoId": ("String?", False),
          "hfFolderId": ("String?", False), "visibility": ("Visibility", False),
          "defaultOfModelId": ("String?", False), "setName": ("String", True), "creatorId": ("String", True),
          "hasUmap": ("Boolean", False), "hasUmapLogSparsity": ("Boolean", False),
          "hasUmapClusters": ("Boolean", False), "num_prompts": ("Int?", False),
          "num_tokens_in_prompt": ("Int?", False), "dataset": ("String?", False), "notes": ("String?", False),
          "cosSimMatchModelId": ("String?", False), "cosSimMatchSourceId": ("String?", False),
          "createdAt": ("DateTime", False)}
VISIBILITY = {"PUBLIC", "UNLISTED", "PRIVATE"}  # schema.prisma, enum Visibility
BOT_USER = "clkht01d40000jv08hvalcvly"  # prisma/seed.ts: the user every instance has (creatorId/authorId are FKs)


def _is(value, prisma_type: str) -> bool:
    """`value` as JSON can fill a column of `prisma_type` (jsonb_to_recordset casts to the column's type:
    an Int column refuses 3.0, a Float column refuses NaN, which JSON cannot carry anyway)."""
    base = prisma_type.rstrip("?")
    if value is None:
        return prisma_type.endswith("?")
    if base.endswith("[]"):
        return isinstance(value, list) and all(_is(v, base[:-2]) for v in value)
    if base == "String":
        return isinstance(value, str)
    if base == "Int":
        return isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31
    if base == "Float":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if base == "Boolean":
        return isinstance(value, bool)
    if base == "Visibility":
        return value in VISIBILITY
    return base == "Json"


def _check_rows(rows: list[dict], schema: dict, table: str) -> None:
    assert rows, table
    # import.ts: the columns inserted are the keys of the FIRST line; a key that is no column is dropped
    # silently, a column another line lacks becomes NULL. So: one key set per file, every key a column.
    keys = set(rows[0])
    assert keys <= schema.keys(), (table, keys - schema.keys())
    assert {c for c, (_, required) in schema.items() if required} <= keys, table
    for row in rows:
        assert set(row) == keys, table
        for column, value in row.items():
            assert _is(value, schema[column][0]), (table, column, value)
            if schema[column][1]:
                assert value is not None, (table, column)


def _read_jsonl_gz(path) -> list[dict]:
    # s3.ts downloadAndDecompressFile: ungzip, then split('\n'); import.ts skips nothing else
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().split("\n") if line.strip()]


@pytest.fixture
def ingested(ingested):
    """tests/export/conftest.py's warehouse plus a stored correlation run of base-sae with itself."""
    wh, stored = ingested
    with wh.transaction() as con:
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (1, 'base-sae', 'base-sae', 'evalset', 'all_tokens', 0.1, 100, 2)")
        con.executemany("INSERT INTO correlations VALUES (1, ?, ?, ?)", [(3, 5, 0.9), (3, 7, 0.4)])
    return wh, stored


def _export(wh, fmt, out, *extra):
    result = invoke("export-features", "base-sae", "--format", fmt, "--out", str(out), "--context", "32", *extra,
                    "--warehouse", str(wh.root))
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def layout(ingested, tmp_path):
    wh, stored = ingested
    out = _export(wh, "neuronpedia", tmp_path / "np")
    # s3.ts: DATASET_BASE_PATH 'v1/'; admin/import/route.ts: path = `${DATASET_BASE_PATH}${modelId}/${sourceId}`;
    # the model is 'base', the SAE 'base-sae' at layer 0 -> source '0-base-sae' (lib/utils/source.ts)
    root = out / "v1" / "base" / "0-base-sae"
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    return wh, stored, root, files


def test_layout_is_what_the_admin_import_reads(layout):
    _, _, root, files = layout
    # admin/import/route.ts reads model.jsonl, sourceset.jsonl, source.jsonl (release.jsonl optional, in a
    # try), then getFilesInPath(`${path}/features`, '.jsonl.gz'), (`${path}/activations`, '.jsonl.gz', no
    # subfolders), (`${path}/explanations/`, '.jsonl.gz'); explanationBatchStart wants `batch-<n>.jsonl.gz`.
    assert {"model.jsonl", "sourceset.jsonl", "source.jsonl"} <= files
    for folder in ("features", "activations", "explanations"):
        names = sorted(f for f in files if f.startswith(folder + "/"))
        assert names and all(n.count("/") == 1 for n in names), folder
        assert all(n.split("/")[1].startswith("batch-") and n.endswith(".jsonl.gz") for n in names), names
        for name in names:
            assert gzip.decompress((root / name).read_bytes())  # a gzip file (node-gzip ungzip)
    assert files <= {"model.jsonl", "sourceset.jsonl", "source.jsonl"} | {f for f in files if f.endswith(".jsonl.gz")}


def test_every_row_has_every_required_column_with_its_type(layout):
    _, _, root, _ = layout
    # import.ts importJsonlString('Neuron' | 'Activation' | 'Explanation', ...), one call per file
    for folder, schema, table in (("features", NEURON, "Neuron"), ("activations", ACTIVATION, "Activation"),
                                  ("explanations", EXPLANATION, "Explanation")):
        for path in sorted((root / folder).glob("*.jsonl.gz")):
            _check_rows(_read_jsonl_gz(path), schema, table)
    # admin/import/route.ts: prisma.model/sourceSet/source.create({data: line}) -- parseLine per line
    for name, schema in (("model.jsonl", MODEL), ("sourceset.jsonl", SOURCE_SET), ("source.jsonl", SOURCE)):
        rows = [json.loads(line) for line in (root / name).read_text().split("\n") if line]
        assert len(rows) == 1, name
        _check_rows(rows, schema, name)


def _all(root, folder):
    return [row for path in sorted((root / folder).glob("*.jsonl.gz")) for row in _read_jsonl_gz(path)]


def test_layer_ids_and_cross_references(layout):
    _, stored, root, _ = layout
    model = json.loads((root / "model.jsonl").read_text())
    source_set = json.loads((root / "sourceset.jsonl").read_text())
    source = json.loads((root / "source.jsonl").read_text())
    # schema.prisma Model.id zod rule: ^[a-zA-Z0-9-_]+$, lowercased
    assert model["id"] == "base"
    # lib/utils/source.ts: getLayerNumFromSource = the part before the first '-', getSourceSetNameFromSource =
    # after it, up to '__'; Source @@unique([modelId, id]) and its set relation (modelId, setName)
    assert source["id"] == f"0-{source_set['name']}" and source["id"].split("-")[0] == "0"
    assert source["id"][source["id"].index("-") + 1:].split("__")[0] == source_set["name"] == source["setName"]
    assert source["modelId"] == source_set["modelId"] == model["id"]
    features, activations, explanations = (_all(root, f) for f in ("features", "activations", "explanations"))
    # Neuron: @@unique([modelId, layer, index]); its source relation (modelId, layer) -> Source (modelId, id)
    keys = [(f["modelId"], f["layer"], f["index"]) for f in features]
    assert len(set(keys)) == len(keys)
    assert {f["layer"] for f in features} == {source["id"]} and {f["sourceSetName"] for f in features} == {source_set["name"]}
    assert sorted(int(f["index"]) for f in features) == sorted({f for _, f in stored})
    # Activation / Explanation: id @id (unique); neuron relation (modelId, layer, index) -> Neuron
    for rows in (activations, explanations):
        assert len({r["id"] for r in rows}) == len(rows) and all(len(r["id"]) == 25 for r in rows)
        assert {(r["modelId"], r["layer"], r["index"]) for r in rows} <= set(keys)
    assert len({r["id"] for r in activations} & {r["id"] for r in explanations}) == 0
    # creatorId / authorId: foreign keys to User; the seeded bot user (prisma/seed.ts)
    assert {r["creatorId"] for r in features + activations} | {r["authorId"] for r in explanations} == {BOT_USER}
    assert model["creatorId"] == source_set["creatorId"] == source["creatorId"] == BOT_USER
    # Explanation.typeName / explanationModelName: foreign keys to ExplanationType / ExplanationModelType,
    # which hold Neuronpedia's registered names only: left NULL (ON DELETE SET NULL, nullable)
    assert all(e["typeName"] is None and e["explanationModelName"] is None for e in explanations)


def test_values_are_the_warehouses(layout):
    wh, stored, root, _ = layout
    features = {int(f["index"]): f for f in _all(root, "features")}
    activations = _all(root, "activations")
    explanations = _all(root, "explanations")
    n_tokens = wh.query("SELECT n_tokens FROM corpora WHERE name = 'evalset'").column(0)[0].as_py()
    vocab = dict(zip(*(wh.query("SELECT token_id, text FROM vocab").column(c).to_pylist() for c in ("token_id", "text"))))
    from featstore.activations.ingest import windows

    spans = list(windows(wh, "evalset", 32))
    for feature, row in features.items():
        acts = [a for (_, f), a in stored.items() if f == feature]
        assert row["maxActApprox"] == pytest.approx(max(acts), rel=1e-5)
        assert row["frac_nonzero"] == pytest.approx(len(acts) / n_tokens)
        assert sum(row["freq_hist_data_bar_heights"]) == len(acts)  # the activation histogram of every firing
        assert len(row["freq_hist_data_bar_values"]) == len(row["freq_hist_data_bar_heights"]) == saedashboard.N_HIST_BINS
        assert len(row["logits_hist_data_bar_values"]) == saedashboard.N_HIST_BINS
        assert sum(row["logits_hist_data_bar_heights"]) == len(vocab)  # the decoder row's effect on every logit
        assert len(row["pos_str"]) == len(row["pos_values"]) == saedashboard.N_LOGITS
        assert row["pos_values"] == sorted(row["pos_values"], reverse=True) and row["neg_values"] == sorted(row["neg_values"])
        examples = [a for a in activations if int(a["index"]) == feature]
        assert examples and max(a["maxValue"] for a in examples) == pytest.approx(max(acts), rel=1e-5)
        for a in examples:
            assert len(a["tokens"]) == len(a["values"])
            assert a["values"][a["maxValueTokenIndex"]] == a["maxValue"] == max(a["values"])
            assert a["minValue"] == min(a["values"])
            # the example's tokens are a stored window's tokens, and each non-zero value the stored activation
            # of that token (the window found by its tokens and its values)
            matches = [(toks, ids) for toks, ids in spans if [vocab.get(int(i), "") for i in ids] == a["tokens"]
                       and all(math.isclose(v, stored.get((int(t), feature), 0.0), rel_tol=1e-5, abs_tol=1e-6)
                               for t, v in zip(toks, a["values"]))]
            assert matches, (feature, a["tokens"])
    assert [(int(e["index"]), e["description"]) for e in explanations] == [(3, "the word cat")]
    assert features[3]["correlated_features_indices"] == [5, 7]  # the stored run, through SAEDashboard's query


def test_features_chosen_and_reexport_ids_stable(ingested, tmp_path):
    wh, _ = ingested
    first = _export(wh, "neuronpedia", tmp_path / "a", "--features", "3,7") / "v1" / "base" / "0-base-sae"
    again = _export(wh, "neuronpedia", tmp_path / "b", "--features", "3,7") / "v1" / "base" / "0-base-sae"
    assert sorted(int(f["index"]) for f in _all(first, "features")) == [3, 7]
    # ids from what they name: a second import of the same export inserts nothing (ON CONFLICT DO NOTHING)
    assert [a["id"] for a in _all(first, "activations")] == [a["id"] for a in _all(again, "activations")]


def test_upload_batch_bodies_pass_the_routes_schema(ingested, tmp_path):
    wh, stored = ingested
    out = _export(wh, "neuronpedia-api", tmp_path / "api")
    bodies = [json.loads(p.read_text()) for p in sorted(out.glob("batch-*.json"))]
    assert bodies
    seen = []
    for body in bodies:
        # feature/upload-batch/route.tsx uploadBatchSchema (yup): modelId, source lowercase strings;
        # features 1..128, index integer 0..10M, density 0..1, top/bottomLogits <= 20 {token, value},
        # explanations {text 1..512}, activations >= 1 with tokens 1..1024 (non-empty strings: yup required)
        # and values of the same length (checked in the route)
        assert body["modelId"] == body["modelId"].lower() == "base" and body["source"] == "0-base-sae"
        assert 1 <= len(body["features"]) <= 128
        for f in body["features"]:
            assert isinstance(f["index"], int) and 0 <= f["index"] <= 10_000_000 and 0 <= f["density"] <= 1
            for key in ("topLogits", "bottomLogits"):
                assert len(f[key]) <= 20 and all(isinstance(x["token"], str) and x["token"] and _is(x["value"], "Float")
                                                 for x in f[key])
            assert all(1 <= len(e["text"]) <= 512 and e["methodName"] is None and e["modelName"] is None
                       for e in f["explanations"])
            assert f["activations"]
            for a in f["activations"]:
                assert 1 <= len(a["tokens"]) <= 1024 and len(a["tokens"]) == len(a["values"])
                assert all(isinstance(t, str) and t for t in a["tokens"]) and all(_is(v, "Float") for v in a["values"])
            acts = [a for (_, g), a in stored.items() if g == f["index"]]
            assert max(max(a["values"]) for a in f["activations"]) == pytest.approx(max(acts), rel=1e-5)
            seen.append(f["index"])
    assert len(seen) == len(set(seen))  # the route: "All indexes must be unique." (per request; here overall)
    assert sorted(seen) == sorted({f for _, f in stored})
    assert [e["text"] for b in bodies for f in b["features"] for e in f["explanations"]] == ["the word cat"]


def test_upload_batch_refuses_windows_the_route_refuses(ingested, tmp_path):
    wh, _ = ingested
    result = invoke("export-features", "base-sae", "--format", "neuronpedia-api", "--context", "2048", "--out",
                    str(tmp_path / "api"), "--warehouse", str(wh.root))
    assert result.exit_code == 1 and "1024" in result.output and not (tmp_path / "api").exists()
