"""Experiment files: the shipped paper experiments derive today's steps, overrides, bad files, --plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import FIXTURES, invoke, run_cli

from featstore.errors import FeatstoreError
from featstore.pipeline.experiment import (
    DEFAULT_REAL_CORPORA,
    experiments_dir,
    load_experiment,
)
from featstore.pipeline.steps import build_steps, downstream, input_hash

# What the derived steps add to the parameters build_steps(preset) had before experiment files: the
# lineage and settings the old code hard-coded (all with the values it used), and the slice specs
# that eval-slices used to read from the zoo preset.
ADDED = {
    "train-base": {"name": "base"},
    "finetune-lua": {"parent": "base"},
    "finetune-tinystories": {"parent": "base"},
    "merge": {"name": "luastories", "parents": ["lua", "tinystories"], "method": "slerp"},
    "merge-sweep": {"models": ["lua", "tinystories"], "method": "slerp"},
    **{f"correlate-{pair}": {"stats": ["all_tokens"]}
       for pair in ("base-lua", "base-tinystories", "lua-luastories", "tinystories-luastories",
                    "base-seed1", "lua-seed1", "tinystories-seed1", "luastories-seed1")},
}
SLICE_MODEL = {"eval-python": "base", "eval-lua": "lua", "eval-stories": "tinystories"}


def as_json(value):
    return json.loads(json.dumps(value, sort_keys=True, default=str))


@pytest.mark.parametrize("preset, file", [("tiny", "paper-tiny.toml"), ("paper", "paper.toml")])
def test_shipped_paper_experiments_derive_the_steps_and_parameters_of_the_old_presets(preset, file):
    """The fixtures hold build_steps(PRESETS[preset]) as it was before experiment files existed, when
    every SAE started from its `seed` (init = "shared")."""
    before = json.loads((FIXTURES / f"pipeline_steps_{preset}.json").read_text())
    after = build_steps(load_experiment(experiments_dir() / file, ['saes.default.init="shared"']))
    assert [s.name for s in after] == [s["name"] for s in before]
    for old, new in zip(before, after):
        assert list(new.after) == old["after"], new.name
        params = as_json(new.params)
        if new.name == "eval-slices":  # the slices once read from the zoo preset's corpora, same text and size
            zoo, tokens = old["params"]["zoo"], old["params"]["tokens"]
            assert params == {"slices": {name: {"source": zoo["corpora"][model], "part": "validation", "tokens": tokens,
                                                "doc_tokens": None, "min_docs": None, "tokenizer_from": "base"}
                                         for name, model in SLICE_MODEL.items()}}
            continue
        added = dict(ADDED.get(new.name, {}))
        if "settings" in params:  # a setting added since: which training step, the same math either way
            assert params["settings"].pop("training_step") == "auto", new.name
        if "zoo" in params:  # the corpus the old code looked up in the zoo preset by the model's name
            added["corpus"] = old["params"]["zoo"]["corpora"][old["params"].get("name", "base")]
        assert params == {**old["params"], **added}, new.name


def test_no_file_is_the_shipped_tiny_experiment():
    default, shipped = build_steps(load_experiment()), build_steps(load_experiment(experiments_dir() / "paper-tiny.toml"))
    assert [(s.name, as_json(s.params)) for s in default] == [(s.name, as_json(s.params)) for s in shipped]


def hashes(steps) -> dict[str, str]:
    out: dict[str, str] = {}
    for step in steps:
        out[step.name] = input_hash(step, out)
    return out


def changed(before, after) -> set[str]:
    return {name for name, digest in after.items() if before.get(name) != digest}


def test_overrides_change_only_what_depends_on_them():
    plain = build_steps(load_experiment())
    base = hashes(plain)
    lua_lr = build_steps(load_experiment(None, ["models.lua.lr=5e-4"]))
    assert next(s for s in lua_lr if s.name == "finetune-lua").params["zoo"]["finetune"]["lr"] == 5e-4
    assert changed(base, hashes(lua_lr)) == downstream(plain, ["finetune-lua"])
    assert "finetune-tinystories" not in downstream(plain, ["finetune-lua"])
    seeded = build_steps(load_experiment(None, ["saes.default.seed=1"]))
    assert {s.params["settings"]["data_seed"] for s in seeded if s.name.startswith("sae-")} == {1}
    assert changed(base, hashes(seeded)) == downstream(plain, [s.name for s in plain if s.name.startswith("sae-")])


def test_adding_a_model_or_an_sae_adds_its_steps_and_reruns_only_what_reads_them():
    before = hashes(build_steps(load_experiment()))
    more = ["models.lua2.parent=base", "models.lua2.corpus=lua", "models.lua2.lr=5e-4",
            "saes.base.seed2.seed=2"]
    after = hashes(build_steps(load_experiment(None, more)))
    new = {"finetune-lua2", "sae-lua2", "ingest-lua2", "correlate-base-lua2", "match-base-lua2", "explain-lua2",
           "sae-base-seed2", "ingest-base-seed2", "correlate-base-seed2", "match-base-seed2"}
    assert set(after) - set(before) == new
    # the base's explanations cover its new edge, and the report covers everything
    assert changed(before, after) == new | {"explain-base", "report"}


def test_any_lineage_gets_steps_in_dependency_order(tmp_path):
    experiment = load_experiment(None, [
        "models.lua2.parent=base", "models.lua2.corpus=lua",
        'models.grand.parents=["luastories", "lua2"]', "models.grand.t=0.6",
    ])
    names = [s.name for s in build_steps(experiment)]
    assert names.index("merge-grand") > max(names.index("merge"), names.index("finetune-lua2"))
    assert {"correlate-luastories-grand", "correlate-lua2-grand", "explain-grand"} <= set(names)
    grand = next(s for s in build_steps(experiment) if s.name == "merge-grand")
    assert grand.params["t"] == 0.6 and grand.after == ("merge", "finetune-lua2")


BAD = [
    # (--set overrides or raw TOML appended, the key the one-line error names, what it says)
    (["colour=1"], "colour", "unknown key"),
    (["models.lua.lrr=1"], "models.lua.lrr", "unknown key"),
    (["models.lua.parent=nobody"], "models.lua.parent", "unknown parent 'nobody'"),
    (["models.base.parent=luastories"], "models.base", "the lineage has a cycle"),
    (['models.luastories.parents=["lua"]'], "models.luastories.parents", "a merge needs two different parent models"),
    (["models.ext.path={folder}", 'models.luastories.parents=["lua", "ext"]'], "models.luastories.parents",
     "tokenizer mismatch"),
    (["corpora.lua=/no/such/lua"], "corpora.lua.source", "/no/such/lua does not exist"),
    (["models.lua.lr=fast"], "models.lua.lr", "expected a number, got a string"),
    (["models.lua.corpus=klingon"], "models.lua.corpus", "unknown corpus 'klingon'"),
    (["models.luastories.t=1.5"], "models.luastories.t", "between 0 and 1"),
    (["saes.nobody.main.seed=1"], "saes.nobody", "unknown model 'nobody'"),
    (["saes.base.main.expansion=wide"], "saes.base.main.expansion", "expected an integer"),
    (['analyses.sweeps.s.models=["lua"]'], "analyses.sweeps.s.models", "two different declared models"),
    (["slices.eval-lua.doc_tokens=0"], "slices.eval-lua.doc_tokens", "at least 1"),
    (["models.lua.home=nowhere"], "models.lua.home", "unknown slice 'nowhere'"),
    ("[models.lua\n", "", "not valid TOML"),
    (["crosscoders.x.parent=base"], "crosscoders.x.child", "missing (required)"),
    (["crosscoders.x.parent=base", "crosscoders.x.child=nobody"], "crosscoders.x.child", "unknown model 'nobody'"),
    (["crosscoders.x.parent=lua", "crosscoders.x.child=lua"], "crosscoders.x.child", "two different models"),
    (["crosscoders.x.parent=base", "crosscoders.x.child=lua", "crosscoders.x.k=0"], "crosscoders.x", "k must be at least 1"),
    (["crosscoders.x.parent=base", "crosscoders.x.child=lua", "crosscoders.x.sparsity=l2"], "crosscoders.x",
     "unknown crosscoder sparsity 'l2'"),
    (["crosscoders.x.parent=base", "crosscoders.x.child=lua", "crosscoders.x.width=3"], "crosscoders.x.width", "unknown key"),
    (["crosscoders.x.parent=base", "crosscoders.x.child=lua", 'crosscoders.x.slices=["nowhere"]'], "crosscoders.x.slices",
     "'nowhere' is not a slice both base and lua are ingested on"),
    (["crosscoders.base-sae.parent=base", "crosscoders.base-sae.child=lua"], "crosscoders.base-sae", "an SAE of the experiment"),
    (["saes.lua.main.init=parent"], "saes.lua.main.init", "the main SAE stands for its model in persistence"),
    (["saes.base.lineage.init=parent"], "saes.base.lineage.init", "model 'base' has no parent to start from"),
    (["saes.lua.lineage.init=child"], "saes.lua.lineage.init", "use independent, shared or parent, got 'child'"),
    (["saes.lua.lineage.init=parent", "saes.lua.lineage.init_fraction=0"], "saes.lua.lineage.init_fraction", "must be from"),
    (["saes.lua.lineage.init=parent", "saes.lua.lineage.init_fraction=1.5"], "saes.lua.lineage.init_fraction", "must be from"),
    (["saes.lua.replica.init_fraction=0.5"], "saes.lua.replica.init_fraction", "unknown key"),
    (["saes.lua.x.init=shared", "saes.lua.x.init_fraction=0.5"], "saes.lua.x.init_fraction", "unknown key"),
    (["analyses.causal=3"], "analyses.causal", "expected a table, got an integer"),
    (["analyses.causal.top=-1"], "analyses.causal", "causal top must be at least 0"),
    (['analyses.causal.top="x"'], "analyses.causal.top", "expected an integer"),
    (["analyses.causal.method=pearson"], "analyses.causal", "not a match method to check"),
    (['analyses.causal.slices=["nowhere"]'], "analyses.causal.slices", "unknown slice 'nowhere'"),
    (["analyses.causal.width=3"], "analyses.causal.width", "unknown key"),
]


@pytest.mark.parametrize("change, key, message", BAD, ids=[f"{i}-{b[1] or 'toml'}" for i, b in enumerate(BAD)])
def test_bad_experiment_files_fail_in_one_line_naming_file_and_key(tmp_path, change, key, message):
    folder = tmp_path / "ext-model"
    folder.mkdir()
    file = tmp_path / "bad.toml"
    text = (experiments_dir() / "paper-tiny.toml").read_text()
    overrides = []
    if isinstance(change, str):
        text += change
    else:
        overrides = [item.format(folder=folder) for item in change]
    file.write_text(text)
    warehouse = tmp_path / "wh"
    args = ["--warehouse", str(warehouse), "run", str(file)] + [a for o in overrides for a in ("--set", o)]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith(f"error: {file}: {key}") and message in line, line
    assert not warehouse.exists()  # nothing ran, nothing was written


def test_a_file_extends_another_table_by_table(tmp_path):
    """methods-tiny.toml is paper-tiny plus crosscoders, causal checks and the initialisation control: the same
    steps with the same hashes; two lineage-initialised SAEs and a shared-init SAE per model, each compared
    along its edges (correlate, match, causal); three crosscoder steps, the match steps of their edges after
    them with the crosscoder method; and a causal step per lineage edge."""
    tiny = build_steps(load_experiment(experiments_dir() / "paper-tiny.toml"))
    methods = load_experiment(experiments_dir() / "methods-tiny.toml")
    assert methods.name == "methods-tiny" and methods.models == load_experiment().models
    steps = {s.name: s for s in build_steps(methods)}
    old, new = hashes(tiny), hashes(list(steps.values()))
    changed = {name for name in old if old[name] != new[name]}
    assert changed == {"match-base-lua", "match-base-tinystories", "report"}
    controls = ["base-lua-lineage", "base-lua-shared", "base-tinystories-lineage", "base-tinystories-shared",
                "lua-luastories-shared", "tinystories-luastories-shared"]
    saes = [f"{kind}-{m}-{e}" for m, e in (("base", "shared"), ("lua", "lineage"), ("lua", "shared"), ("tinystories", "lineage"),
                                          ("tinystories", "shared"), ("luastories", "shared")) for kind in ("sae", "ingest")]
    edges = ["base-lua", "base-tinystories", "lua-luastories", "tinystories-luastories"]
    assert [n for n in new if n not in old] == [
        *saes, *(f"correlate-{c}" for c in controls), "crosscoder-base-lua-crosscoder", "crosscoder-base-tinystories-crosscoder",
        "crosscoder-base-lua-crosscoder-l1", *(f"match-{c}" for c in controls), *(f"causal-{e}" for e in edges + controls)]
    shared = steps["sae-lua-shared"]
    assert shared.params["primary"] is False and shared.group == "train-saes-lua" and "seed_of" not in shared.params
    assert shared.params["settings"]["seed"] == methods.seed != steps["sae-lua"].params["settings"]["seed"]
    assert (steps["correlate-base-lua-shared"].params["parent_sae"], steps["correlate-base-lua-lineage"].params["parent_sae"]) == (
        "base-sae-shared", "base-sae")
    assert steps["causal-base-lua"].params["slices"] == ["eval-lua"] and steps["causal-base-lua"].after == ("correlate-base-lua",)
    lineage = steps["sae-lua-lineage"]
    assert lineage.params["init_from"] == "base-sae" and lineage.after == ("finetune-lua", "sae-base")
    assert lineage.params["settings"]["tokens"] == steps["sae-lua"].params["settings"]["tokens"] // 4
    assert steps["match-base-lua"].after == ("correlate-base-lua", "crosscoder-base-lua-crosscoder", "crosscoder-base-lua-crosscoder-l1")
    assert "crosscoder" in steps["match-base-lua"].params["methods"] and "methods" not in steps["match-lua-luastories"].params
    assert steps["crosscoder-base-lua-crosscoder-l1"].params["settings"] == {"seed": 0, "sparsity": "l1"}
    child = tmp_path / "child.toml"
    child.write_text('extends = "parent.toml"\n[models.base]\ncorpus = "lua"\n')
    (tmp_path / "parent.toml").write_text((experiments_dir() / "paper-tiny.toml").read_text() + '\n[corpora.extra]\nsource = "generated:lua?docs=9"\n')
    extended = load_experiment(child)
    assert extended.name == "child" and extended.models["base"].corpus == "generated:lua?docs=4000"
    assert "extra" in extended.corpora and extended.models["lua"].parents == ("base",)
    (tmp_path / "parent.toml").write_text('extends = "child.toml"\n')
    with pytest.raises(FeatstoreError, match="extends: child.toml leads back to this file"):
        load_experiment(child)
    for line, message in (("extends = 1", "extends: expected a file name, got an integer"),
                          ('extends = "missing.toml"', "extends: missing.toml: no such experiment file")):
        child.write_text(line + "\n")
        with pytest.raises(FeatstoreError, match=message):
            load_experiment(child)


def test_set_needs_key_and_value():
    with pytest.raises(FeatstoreError, match="write KEY.PATH=VALUE"):
        load_experiment(None, ["seed"])
    with pytest.raises(FeatstoreError, match="seed is not a table"):
        load_experiment(None, ["seed.x=1"])


def write_folder(folder: Path, suffix: str, text: str, n: int = 30) -> Path:
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"doc{i}{suffix}").write_text(text.format(i=i))
    return folder


def test_plan_of_the_real_lua_experiment_on_a_folder(tmp_path):
    lua = write_folder(tmp_path / "lua", ".lua", "local function f{i}(x)\n  return x + {i}\nend\n")
    english = write_folder(tmp_path / "english", ".txt", "It was a truth {i} universally acknowledged.")
    warehouse = tmp_path / "wh"
    sets = [f"corpora.lua.source={lua}", f"corpora.english.source={english}", "corpora.python.source=python-stdlib"]
    result = run_cli(warehouse, "run", "--plan", str(experiments_dir() / "real-lua.toml"),
                     *(arg for s in sets for arg in ("--set", s)))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for step in ("train-base", "finetune-lua", "finetune-english", "merge-luaenglish", "eval-slices",
                 "correlate-lua-luaenglish", "sweep-lua-english", "report"):
        assert any(line.split()[:3] == ["run", step, "new"] for line in lines), (step, result.output)
    assert lines[-1] == f"{len(lines) - 1} of {len(lines) - 1} steps would run"
    assert not warehouse.exists()
    experiment = load_experiment(experiments_dir() / "real-lua.toml", sets)
    assert experiment.slices["eval-lua"].doc_tokens == 1000 and experiment.models["lua"].corpus == str(lua)

    missing = invoke("run", "--plan", str(experiments_dir() / "real-lua.toml"), "--set",
                     f"corpora.lua.source={tmp_path / 'nope'}")
    assert missing.exit_code == 1 and "corpora." in missing.output and "does not exist" in missing.output


def test_the_real_lua_experiment_reads_the_debian_corpora_by_default(tmp_path, monkeypatch):
    """Without --set it points at `featstore corpus debian`'s output, and says how to build it when absent."""
    monkeypatch.setenv("HOME", str(tmp_path))
    missing = invoke("run", "--plan", str(experiments_dir() / "real-lua.toml"))
    assert missing.exit_code == 1 and "build it with `featstore corpus debian`" in missing.output, missing.output
    real = DEFAULT_REAL_CORPORA.expanduser()
    write_folder(real / "lua", ".lua", "return {i}\n")
    write_folder(real / "python", ".py", "x = {i}\n")
    (real / "english.jsonl").write_text("".join(f'{{"text": "Chapter {i}."}}\n' for i in range(30)))
    experiment = load_experiment(experiments_dir() / "real-lua.toml", [])
    assert Path(experiment.models["lua"].corpus).expanduser() == real / "lua"
    assert experiment.family == "real"
