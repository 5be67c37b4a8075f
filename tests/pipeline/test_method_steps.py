"""An experiment's analyses beyond correlation. [crosscoders.NAME]: its step trains, classifies and ingests the
crosscoder, the match step of its edge adds the crosscoder method. [analyses.causal]: a step per edge checks
its best matches causally. `init = "parent"`: the child's SAE starts from the parent's and its drift is
measured; `init = "shared"` entries are matched along the edge, so init_control has all three
initialisations. A rerun skips them all, and removing them prunes what they made."""

from __future__ import annotations

from helpers import BASE_LUA_EDGE

from featstore.pipeline.experiment import load_experiment
from featstore.pipeline.steps import RunContext, build_steps, prune_removed, run_steps

EDGE = BASE_LUA_EDGE + """
[saes.lua.lineage]
init = "parent"

[saes.lua.shared]
init = "shared"

[saes.base.shared]
init = "shared"

[crosscoders.base-lua-xc]
parent = "base"
child = "lua"
expansion = 1
k = 8
tokens = 2048
batch_tokens = 256
block_len = 32
eval_tokens = 512

[analyses.causal]
top = 3
sample = 2
blocks = 6
block_len = 32
"""


def run(warehouse, file) -> dict[str, str]:
    experiment = load_experiment(file)
    steps = [s for s in build_steps(experiment) if not s.name.startswith(("explain-", "report"))]
    records = run_steps(RunContext(warehouse, experiment, "cpu"), steps, log=lambda line: None)
    return {r["step"]: r["status"] for r in records}


def test_crosscoder_and_causal_steps_feed_the_evidence_and_reruns_skip_them(warehouse, micro_experiment):
    file = micro_experiment(EDGE)
    first = run(warehouse, file)
    assert first["crosscoder-base-lua-xc"] == first["match-base-lua"] == first["causal-base-lua"] == "ran"
    row = warehouse.query("SELECT * FROM crosscoder_summary").to_pylist()
    assert len(row) == 1 and row[0]["crosscoder"] == "base-lua-xc" and row[0]["d_sae"] == 64
    assert warehouse.scalar("SELECT count(*) FROM activation_partitions WHERE sae = 'base-lua-xc' AND corpus = 'eval-lua'") == 1
    methods = warehouse.query("SELECT DISTINCT method FROM match_runs WHERE sae_a = 'base-sae'").column(0).to_pylist()
    assert "crosscoder" in methods
    [drift] = warehouse.query("SELECT * FROM drift_summary").to_pylist()
    assert (drift["sae"], drift["init_from"], drift["corpus"]) == ("lua-sae-lineage", "base-sae", "eval-lua")
    assert drift["live_features"] > 0 and not warehouse.saes.get("lua-sae-lineage")["is_primary"]
    assert first["correlate-base-lua-lineage"] == first["causal-base-lua-shared"] == "ran"
    control = warehouse.query("SELECT init, child_sae FROM init_control WHERE method = 'all_tokens' AND corpus = 'eval-lua'"
                              " ORDER BY init").to_pylist()
    assert control == [{"init": "independent", "child_sae": "lua-sae"}, {"init": "lineage", "child_sae": "lua-sae-lineage"},
                       {"init": "shared", "child_sae": "lua-sae-shared"}]
    checked = warehouse.query("SELECT corpus, pairs FROM causal_summary WHERE sae_b = 'lua-sae' ORDER BY selected DESC").to_pylist()
    assert checked == [{"corpus": "eval-lua", "pairs": 3}, {"corpus": "eval-lua", "pairs": 2}]
    again = run(warehouse, file)
    assert again["crosscoder-base-lua-xc"] == again["match-base-lua"] == again["causal-base-lua"] == "skipped"
    assert again["sae-lua-lineage"] == "skipped"

    file.write_text(file.read_text().split("[analyses.causal]")[0])
    assert sorted(prune_removed(warehouse, build_steps(load_experiment(file)))) == sorted(
        f"pruned causal-base-lua{label}: causal checks of {a} x {b}" for label, a, b in (
            ("", "base-sae", "lua-sae"), ("-lineage", "base-sae", "lua-sae-lineage"), ("-shared", "base-sae-shared", "lua-sae-shared")))
    assert warehouse.scalar("SELECT count(*) FROM causal_effects") == 0

    file.write_text(file.read_text().split("[crosscoders.base-lua-xc]")[0])
    steps = build_steps(load_experiment(file))
    assert prune_removed(warehouse, steps) == ["pruned crosscoder-base-lua-xc: crosscoder base-lua-xc"]
    assert warehouse.scalar("SELECT count(*) FROM saes WHERE architecture = 'crosscoder'") == 0
    assert warehouse.scalar("SELECT count(*) FROM match_runs WHERE method = 'crosscoder'") == 0
