"""Experiment files at micro size: a lineage that a fixed chain of steps could not express, run
incrementally: a base, three fine-tunes (one on a folder of files), a merge, a merge of that merge
with the third fine-tune, and two SAEs on the base."""

from __future__ import annotations

import hashlib
import json

from helpers import run_cli

from featstore.pipeline.experiment import load_experiment
from featstore.pipeline.steps import build_steps, plan, run_pipeline
from featstore.report.build import figure2_panels
from featstore.report.figures import layout_lineage

LINEAGE = """
[corpora.notes]
source = "{notes}"

[models.base]
corpus = "english=0.5+lua=0.5"

[models.lua]
parent = "base"
corpus = "lua"

[models.stories]
parent = "base"
corpus = "tinystories"

[models.notes]
parent = "base"
corpus = "notes"

[models.luastories]
parents = ["lua", "stories"]
t = 0.58

[models.grand]
parents = ["luastories", "notes"]
t = 0.5

[saes.base.seed1]
seed = 1

[slices.eval-lua]
corpus = "lua"
tokens = 300

[analyses.sweeps.sweep-lua-notes]
models = ["lua", "notes"]
steps = 2
eval_tokens = 64

[slices.eval-notes]
corpus = "notes"
tokens = 300
doc_tokens = 40
min_docs = 3
"""
SMALL = ["analyses.explain.top=2", "analyses.explain.sample=2"]  # fewer features to explain per SAE
MODELS = ("base", "lua", "stories", "notes", "luastories", "grand")
EDGES = {("base", "lua"), ("base", "stories"), ("base", "notes"), ("lua", "luastories"), ("stories", "luastories"),
         ("luastories", "grand"), ("notes", "grand")}
ADDED = """
[models.lua2]
parent = "base"
corpus = "lua"
lr = 1e-3
"""


def write_notes(folder):
    """A folder of plain-text files, each one document, as a researcher's own data would be."""
    folder.mkdir()
    for i in range(40):
        (folder / f"note{i:02}.txt").write_text(
            f"note {i}: the meeting moved to room {i % 7}. bring the {['map', 'key', 'list'][i % 3]} and a pen.\n" * 6)
    return folder


def ran(result) -> list[str]:
    return [r["step"] for r in result["steps"] if r["status"] == "ran"]


def test_any_lineage_runs_incrementally(warehouse, micro_experiment, tmp_path):
    notes = write_notes(tmp_path / "notes")
    file = micro_experiment(LINEAGE.format(notes=notes))
    quiet = dict(device="cpu", log=lambda line: None)
    experiment = load_experiment(file, SMALL)
    steps = [s.name for s in build_steps(experiment)]
    first = run_pipeline(warehouse, experiment, **quiet)
    assert ran(first) == steps

    # the lineage and its persistence: every edge on both slices, plus the base's seed pair
    assert {(r["parent"], r["child"]) for r in warehouse.query("SELECT parent, child FROM lineage").to_pylist()} == EDGES
    assert warehouse.scalar("SELECT merge_t FROM lineage WHERE child = 'grand' AND parent = 'notes'") == 0.5
    persistence = first["summary"]["run_persistence"].to_pylist()
    assert {(r["parent"], r["child"], r["corpus"]) for r in persistence} == {
        (p, c, s) for p, c in EDGES for s in ("eval-lua", "eval-notes")}
    assert all(0 <= r["share_persisting"] <= 1 for r in persistence)
    # the seed replica is ingested, correlated and matched on its model's home slice only
    assert warehouse.scalar("SELECT count(*) FROM correlation_runs WHERE sae_a = 'base-sae' AND sae_b = 'base-sae-seed1'") == 1
    assert warehouse.scalar("SELECT count(*) FROM saes WHERE model = 'base'") == 2
    # the folder slice is capped per document, and every model is measured on every declared corpus
    assert warehouse.scalar("SELECT max(n_tokens) FROM documents WHERE corpus = 'eval-notes'") <= 40
    metrics = {r["name"]: r["val_loss"] for r in first["summary"]["run_models"].to_pylist()}
    assert set(metrics) == set(MODELS)
    assert all(set(json.loads(v)) == {"english", "lua", "tinystories", "notes"} for v in metrics.values())

    # Figure 2 draws the whole lineage on each slice, merges of merges on their own generation
    with warehouse.connect(read_only=True) as con:
        panels = figure2_panels(con)
    assert set(panels) == {"eval-lua", "eval-notes"}
    for nodes, arrows in panels.values():
        assert [n["name"] for n in nodes] == list(MODELS)
        assert {(a["parent"], a["child"]) for a in arrows} == EDGES
    levels = {name: y for name, (_, y) in layout_lineage(MODELS, sorted(EDGES)).items()}
    assert levels["base"] > levels["lua"] == levels["notes"] > levels["luastories"] > levels["grand"]
    report = (warehouse.root / "report" / "index.html").read_text()
    for figure in ("figure2_flow_eval-notes.png", "figure2_flow_eval-lua.png", "figure5_sweep_lua_notes_slerp.png"):
        assert figure in report and (warehouse.root / "report" / figure).exists(), figure
    assert warehouse.scalar("SELECT count(*) FROM merge_sweep WHERE model_a = 'lua' AND model_b = 'notes'"
                            " AND evaluated = 'merge'") == 2 * 2

    # a second run does nothing and changes nothing
    digest = hashlib.sha256(warehouse.db_path.read_bytes()).hexdigest()
    assert ran(run_pipeline(warehouse, experiment, **quiet)) == []
    assert hashlib.sha256(warehouse.db_path.read_bytes()).hexdigest() == digest

    # one fine-tune's learning rate: that model, what descends from it, and what reads their features
    edited = load_experiment(file, [*SMALL, "models.notes.lr=1e-3"])
    chain = ["finetune-notes", "merge-grand", "sweep-lua-notes", "sae-notes", "ingest-notes", "sae-grand", "ingest-grand",
             "correlate-base-notes", "correlate-luastories-grand", "correlate-notes-grand",
             "match-base-notes", "match-luastories-grand", "match-notes-grand", "explain-base", "explain-notes", "explain-luastories", "explain-grand", "report"]
    assert [r["step"] for r in plan(warehouse, edited) if r["runs"]] == chain
    assert ran(run_pipeline(warehouse, edited, **quiet)) == chain

    # a new model adds its own steps, and reruns only the parent's explanations and the report
    file.write_text(file.read_text() + ADDED)
    more = load_experiment(file, [*SMALL, "models.notes.lr=1e-3"])
    assert ran(run_pipeline(warehouse, more, **quiet)) == [
        "finetune-lua2", "sae-lua2", "ingest-lua2", "correlate-base-lua2", "match-base-lua2", "explain-base",
        "explain-lua2", "report"]

    # removing it keeps its rows until --prune
    file.write_text(file.read_text().replace(ADDED, ""))
    cli_set = [a for o in [*SMALL, "models.notes.lr=1e-3"] for a in ("--set", o)]
    result = run_cli(warehouse, "run", str(file), "--plan", *cli_set)
    assert result.exit_code == 0, result.output
    assert "skip  finetune-lua2" in result.output and "removed from the experiment" in result.output
    assert warehouse.scalar("SELECT count(*) FROM models WHERE name = 'lua2'") == 1
    result = run_cli(warehouse, "run", str(file), "--prune", *cli_set, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "pruned finetune-lua2: model lua2" in result.output and "pruned sae-lua2: SAE lua2-sae" in result.output
    assert warehouse.scalar("SELECT count(*) FROM models WHERE name = 'lua2'") == 0
    assert warehouse.scalar("SELECT count(*) FROM saes WHERE model = 'lua2'") == 0
    assert warehouse.scalar("SELECT count(*) FROM correlation_runs WHERE sae_b = 'lua2-sae'") == 0
    assert warehouse.scalar("SELECT count(*) FROM pipeline_steps WHERE step LIKE '%lua2%'") == 0
