"""Independent initialisation: each SAE of an experiment starts from weights of its own seed, so the
matches across a lineage edge are no longer index-aligned; `init = "shared"` brings the old start back."""

from __future__ import annotations

import pytest
from helpers import BASE_LUA_EDGE
from safetensors.torch import load_file

from featstore.errors import FeatstoreError
from featstore.pipeline.experiment import load_experiment
from featstore.pipeline.steps import RunContext, build_steps, run_steps
from featstore.saes.presets import init_seed

EDGE = BASE_LUA_EDGE + """
[saes.base.seed1]
seed = 1
"""
SHARED = ['saes.default.init="shared"']


def run_until_correlated(warehouse, file, overrides=()) -> None:
    """The experiment's steps up to the correlations (no matching, explanations or report)."""
    experiment = load_experiment(file, list(overrides))
    steps = [s for s in build_steps(experiment) if not s.name.startswith(("match-", "explain-", "report"))]
    run_steps(RunContext(warehouse, experiment, "cpu"), steps, log=lambda line: None)


def edge_share(warehouse) -> dict:
    return warehouse.query("SELECT persisting, same_index, same_index_share, chance FROM same_index_matches"
                           " WHERE relation <> 'seed'").to_pylist()[0]


def initial_weights(warehouse, sae: str):
    return load_file(str(warehouse.root / "saes" / sae / "sae_init.safetensors"))["W_enc"]


def test_each_sae_starts_from_its_own_seed_and_same_index_matches_fall_to_chance(warehouse, micro_experiment):
    file = micro_experiment(EDGE)
    run_until_correlated(warehouse, file, SHARED)
    shared = edge_share(warehouse)
    assert (initial_weights(warehouse, "base-sae") == initial_weights(warehouse, "lua-sae")).all()
    assert shared["same_index_share"] >= 0.5, shared  # the shared start shows as index-aligned matches

    run_until_correlated(warehouse, file)
    independent = edge_share(warehouse)
    assert not (initial_weights(warehouse, "base-sae") == initial_weights(warehouse, "lua-sae")).any()
    # at chance: 3x the expected count of index coincidences, plus one for luck
    assert independent["persisting"] > 0, independent
    assert independent["same_index"] <= 1 + 3 * independent["chance"] * independent["persisting"], independent
    rows = warehouse.query("SELECT id, seed FROM saes ORDER BY id").to_pylist()
    assert rows == [{"id": sae, "seed": init_seed(0 if sae != "base-sae-seed1" else 1, sae)}
                    for sae in ("base-sae", "base-sae-seed1", "lua-sae")]


def test_the_derived_seed_is_recorded_and_a_replica_differs_from_its_primary_only_in_it():
    saes = {s.id: s.settings for s in load_experiment(None).saes}
    for model in ("base", "lua", "tinystories", "luastories"):
        primary, replica = saes[f"{model}-sae"], saes[f"{model}-sae-seed1"]
        assert primary["seed"] == init_seed(0, f"{model}-sae") and replica["seed"] == init_seed(1, f"{model}-sae-seed1")
        assert primary["data_seed"] == replica["data_seed"] == 0  # the text and the batch order stay the run's
        assert {k: v for k, v in primary.items() if k != "seed"} == {k: v for k, v in replica.items() if k != "seed"}
    assert init_seed(0, "lua-sae") == 1451432433  # a stable hash, not Python's salted hash()
    shared = {s.id: s.settings for s in load_experiment(None, SHARED).saes}
    assert (shared["lua-sae"]["seed"], shared["lua-sae-seed1"]["seed"], shared["lua-sae-seed1"]["data_seed"]) == (0, 1, 0)
    reseeded = {s.id: s.settings for s in load_experiment(None, ["saes.default.seed=3"]).saes}
    assert reseeded["lua-sae"]["data_seed"] == reseeded["lua-sae-seed1"]["data_seed"] == 3


@pytest.mark.parametrize("overrides, message", [
    (['saes.default.init="same"'], "saes.default.init: use independent or shared, got 'same'"),
    ([*SHARED, "saes.lua.seed1.seed=0"], "saes.lua.seed1: trains exactly like the main SAE; give it another seed"),
])
def test_bad_init_settings_are_one_line_errors(overrides, message):
    with pytest.raises(FeatstoreError, match=message):
        load_experiment(None, overrides)
