"""The step runner (content-hash skipping, resume after a kill, --force) and the real chain at a micro size."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace

import pytest
from helpers import invoke, run_cli

import featstore.correlation.correlate
from featstore.errors import FeatstoreError
from featstore.pipeline import steps as pipeline
from featstore.pipeline.experiment import load_experiment
from featstore.pipeline.steps import (
    RunContext,
    Step,
    downstream,
    run_pipeline,
    run_steps,
)
from featstore.saes.presets import init_seed

CALLS: list[str] = []
# each model's own slice in the paper lineage (where its seed replica and explanations are)
HOME_SLICE = {"base": "eval-python", "lua": "eval-lua", "tinystories": "eval-stories", "luastories": "eval-lua"}


def write_number(ctx, *, name, value):
    CALLS.append(name)
    (ctx.wh.root / f"{name}.txt").write_text(str(value))
    return {"value": value}


def add_upstream(ctx, *, name, source):
    CALLS.append(name)
    value = ctx.summaries[source]["value"] + 1
    (ctx.wh.root / f"{name}.txt").write_text(str(value))
    return {"value": value}


def exploding(ctx, *, name):
    CALLS.append(name)
    raise KeyboardInterrupt  # what Ctrl-C or a kill in the middle of a step looks like to the runner


def file_exists(name):
    return lambda ctx: (ctx.wh.root / f"{name}.txt").exists()


def chain(a_value=1, c_run=add_upstream):
    """a -> b -> c, and d independent of them."""
    c_params = {"name": "c", "source": "b"} if c_run is add_upstream else {"name": "c"}
    return [
        Step("a", write_number, {"name": "a", "value": a_value}, outputs_exist=file_exists("a")),
        Step("b", add_upstream, {"name": "b", "source": "a"}, after=("a",), outputs_exist=file_exists("b")),
        Step("c", c_run, c_params, after=("b",), outputs_exist=file_exists("c")),
        Step("d", write_number, {"name": "d", "value": 7}, code=("featstore.export.tables",)),
    ]


@pytest.fixture
def ctx(warehouse):
    CALLS.clear()
    return RunContext(warehouse, SimpleNamespace(name="fake"), device="cpu")


def run(ctx, steps, **kw):
    CALLS.clear()
    ctx.summaries.clear()
    return {r["step"]: r["status"] for r in run_steps(ctx, steps, log=lambda line: None, **kw)}


def db_digest(wh):
    return hashlib.sha256(wh.db_path.read_bytes()).hexdigest()


def test_rerun_after_completion_does_nothing_and_changes_nothing(ctx):
    assert set(run(ctx, chain()).values()) == {"ran"}
    assert (ctx.wh.root / "c.txt").read_text() == "3"
    before = db_digest(ctx.wh)
    assert set(run(ctx, chain()).values()) == {"skipped"}
    assert CALLS == []
    assert db_digest(ctx.wh) == before
    assert ctx.summaries["c"] == {"value": 3}  # skipped steps still hand their summaries downstream


def test_changed_parameter_reruns_the_step_and_its_dependants(ctx):
    run(ctx, chain())
    statuses = run(ctx, chain(a_value=10))
    assert statuses == {"a": "ran", "b": "ran", "c": "ran", "d": "skipped"}
    assert (ctx.wh.root / "c.txt").read_text() == "12"


def test_killed_run_resumes_where_it_stopped(ctx):
    with pytest.raises(KeyboardInterrupt):
        run(ctx, chain(c_run=exploding))
    assert CALLS == ["a", "b", "c"]
    status = ctx.wh.query("SELECT step, status FROM pipeline_steps ORDER BY step").to_pylist()
    assert status == [{"step": "a", "status": "done"}, {"step": "b", "status": "done"}, {"step": "c", "status": "running"}]
    statuses = run(ctx, chain())
    assert statuses == {"a": "skipped", "b": "skipped", "c": "ran", "d": "ran"}
    assert CALLS == ["c", "d"]


def test_deleted_output_is_rebuilt(ctx):
    run(ctx, chain())
    (ctx.wh.root / "b.txt").unlink()
    records = run_steps(ctx, chain(), log=lambda line: None)
    assert records[1] == {"step": "b", "status": "ran", "reason": "outputs missing", "seconds": records[1]["seconds"]}
    statuses = {r["step"]: r["status"] for r in records}
    # b's input hash is unchanged, so c (which depends on b's inputs, not its file) stays skipped
    assert statuses == {"a": "skipped", "b": "ran", "c": "skipped", "d": "skipped"}


def test_force_redoes_the_step_and_everything_downstream(ctx):
    run(ctx, chain())
    assert run(ctx, chain(), force=["b"]) == {"a": "skipped", "b": "ran", "c": "ran", "d": "skipped"}
    assert CALLS == ["b", "c"]
    assert downstream(chain(), ["a", "d"]) == {"a", "b", "c", "d"}


def test_code_change_is_part_of_the_hash(ctx, monkeypatch):
    run(ctx, chain())
    real = pipeline._module_source
    monkeypatch.setattr(pipeline, "_module_source", lambda m: real(m) + b"# edited")
    assert run(ctx, chain())["d"] == "ran"


def write_numbers(ctx, params):
    CALLS.append(tuple(p["name"] for p in params))
    for p in params:
        (ctx.wh.root / f"{p['name']}.txt").write_text(str(p["value"]))
    return [{"value": p["value"]} for p in params]


def grouped(value=1):
    """g1 -> g2 in one group (g2 also after x, outside it), x independent, h after g2."""
    group = dict(group="g", together=write_numbers)
    return [
        Step("g1", write_number, {"name": "g1", "value": value}, outputs_exist=file_exists("g1"), **group),
        Step("x", write_number, {"name": "x", "value": 0}, outputs_exist=file_exists("x")),
        Step("g2", write_number, {"name": "g2", "value": 2}, after=("g1", "x"), outputs_exist=file_exists("g2"), **group),
        Step("h", add_upstream, {"name": "h", "source": "g2"}, after=("g2",), outputs_exist=file_exists("h")),
    ]


def test_due_steps_of_a_group_run_in_one_call_at_the_first_ones_place(ctx):
    records = run_steps(ctx, grouped(), log=lambda line: None)
    assert [r["step"] for r in records] == ["g1", "x", "g2", "h"]
    # g2 follows x, which had not run when g1's turn came: it cannot join g1
    assert [c for c in CALLS if c != "h"] == ["g1", "x", "g2"]
    independent = [*grouped()[:2], Step("g2", write_number, {"name": "g2", "value": 3}, after=("g1",),
                                        outputs_exist=file_exists("g2"), group="g", together=write_numbers)]
    CALLS.clear()
    assert {r["step"]: r["status"] for r in run_steps(ctx, independent, force=["g1"], log=lambda line: None)} == {
        "g1": "ran", "x": "skipped", "g2": "ran"}
    assert CALLS == [("g1", "g2")]
    assert [r["step"] for r in ctx.wh.query("SELECT step FROM pipeline_steps WHERE status = 'done'").to_pylist()] == [
        "g1", "x", "g2", "h"] and (ctx.wh.root / "g2.txt").read_text() == "3"
    (ctx.wh.root / "g2.txt").unlink()  # only g2 due: it runs alone
    assert run(ctx, independent) == {"g1": "skipped", "x": "skipped", "g2": "ran"} and CALLS == ["g2"]


def test_a_group_killed_in_its_call_is_redone_whole(ctx):
    def killed(ctx, params):
        raise KeyboardInterrupt

    steps = [Step(n, write_number, {"name": n, "value": 1}, group="g", together=killed) for n in ("g1", "g2")]
    with pytest.raises(KeyboardInterrupt):
        run(ctx, steps)
    assert {r["status"] for r in ctx.wh.query("SELECT status FROM pipeline_steps").to_pylist()} == {"running"}
    assert run(ctx, [Step(n, write_number, {"name": n, "value": 1}, group="g", together=write_numbers)
                     for n in ("g1", "g2")]) == {"g1": "ran", "g2": "ran"} and CALLS == [("g1", "g2")]


def test_bad_step_graphs_and_force_names_are_refused(ctx):
    with pytest.raises(FeatstoreError, match="unknown step 'nope' for --force"):
        run(ctx, chain(), force=["nope"])
    a, b, *_ = chain()
    with pytest.raises(FeatstoreError, match="runs after unknown or later"):
        run(ctx, [b, a])
    with pytest.raises(FeatstoreError, match="defined twice"):
        run(ctx, [a, a])
    result = run_cli(ctx.wh, "run", "huge.toml")
    assert result.exit_code == 1 and "huge.toml: no such experiment file" in result.output
    assert CALLS == []


# -- the real chain at a micro size ------------------------------------------------------------------


def test_micro_pipeline_resumes_after_a_kill_and_reruns_as_a_no_op(warehouse, micro_experiment, monkeypatch):
    file = micro_experiment()
    experiment = load_experiment(file)
    real_correlate, calls = featstore.correlation.correlate.correlate, []

    def killed_on_second_edge(*args, **kwargs):
        calls.append(args[1:3])
        if len(calls) == 4:  # first slice of the second edge
            raise KeyboardInterrupt
        return real_correlate(*args, **kwargs)

    monkeypatch.setattr(featstore.correlation.correlate, "correlate", killed_on_second_edge)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(warehouse, experiment, log=lambda line: None)
    status = {r["step"]: r["status"] for r in warehouse.query("SELECT step, status FROM pipeline_steps").to_pylist()}
    assert status["correlate-base-lua"] == "done" and status["correlate-base-tinystories"] == "running"
    assert "report" not in status

    monkeypatch.setattr(featstore.correlation.correlate, "correlate", real_correlate)
    resumed = run_pipeline(warehouse, experiment, log=lambda line: None)
    ran = [r["step"] for r in resumed["steps"] if r["status"] == "ran"]
    seeds = ["base-seed1", "lua-seed1", "tinystories-seed1", "luastories-seed1"]
    edges = ["base-lua", "base-tinystories", "lua-luastories", "tinystories-luastories"]
    assert ran == ["correlate-base-tinystories", "correlate-lua-luastories", "correlate-tinystories-luastories",
                   *(f"correlate-{s}" for s in seeds), *(f"match-{e}" for e in [*edges, *seeds]),
                   "explain-base", "explain-lua", "explain-tinystories", "explain-luastories", "report"]

    # what the run produced: four models with the merge's lineage, an SAE and three partitions each,
    # every edge correlated on every slice, scores, and the report
    lineage = warehouse.query("SELECT parent, child, merge_t FROM lineage ORDER BY child, parent").to_pylist()
    assert [(r["parent"], r["child"]) for r in lineage] == [
        ("base", "lua"), ("lua", "luastories"), ("tinystories", "luastories"), ("base", "tinystories")]
    assert {r["merge_t"] for r in lineage if r["child"] == "luastories"} == {0.58}
    assert warehouse.scalar("SELECT count(*) FROM activation_partitions") == 12 + 4  # seed replicas: own slice only
    persistence = resumed["summary"]["run_persistence"].to_pylist()
    assert len(persistence) == 12 and all(0 <= r["share_persisting"] <= 1 for r in persistence)
    # every model has a seed replica trained like its primary SAE but for the seed, so every edge has both floors
    replicas = warehouse.query("SELECT s.id, s.seed, s.seed_of, s.is_primary, p.seed AS primary_seed, p.train_tokens = s.train_tokens"
                               " AS same_tokens FROM saes s JOIN saes p ON p.id = s.seed_of ORDER BY s.id").to_pylist()
    # each starts from weights of its own seed: the experiment's seed (0, the replica's 1) hashed with its id
    assert [(r["id"], r["seed"], r["primary_seed"], r["is_primary"], r["same_tokens"]) for r in replicas] == [
        (f"{m}-sae-seed1", init_seed(1, f"{m}-sae-seed1"), init_seed(0, f"{m}-sae"), False, True)
        for m in ("base", "lua", "luastories", "tinystories")]
    assert all(0 < r["parent_floor"] <= 1 and 0 < r["child_floor"] <= 1 for r in persistence)
    assert all(r["share_vs_floor"] == pytest.approx(r["share_persisting"] / r["parent_floor"], abs=2e-3) for r in persistence)
    floors = warehouse.query("SELECT DISTINCT model, corpus FROM seed_floor ORDER BY model").to_pylist()
    assert floors == [{"model": m, "corpus": HOME_SLICE[m]} for m in ("base", "lua", "luastories", "tinystories")]
    one_to_one = warehouse.query("SELECT parent, child, count(*) AS n FROM persistence(method := 'decoder_cosine',"
                                 " policy := 'one_to_one') GROUP BY ALL").num_rows
    assert one_to_one == 4
    assert resumed["summary"]["run_scores"].num_rows == 4
    # explain-<model> scored every feature that persists across its edges, and some that do not
    unscored = warehouse.scalar(
        "SELECT count(*) FROM persistence() p JOIN pipeline_steps s ON s.step = 'explain-' || p.parent"
        " WHERE p.side = 'parent' AND p.status = 'persists' AND p.corpus = s.summary->>'corpus' AND NOT EXISTS"
        " (SELECT 1 FROM scores c WHERE c.sae = p.sae AND c.feature = p.feature AND c.corpus = p.corpus)")
    assert unscored == 0
    assert warehouse.scalar("SELECT count(*) FROM persistence_scores() WHERE side = 'parent' AND NOT persisting") > 0
    assert warehouse.scalar("SELECT count(*) FROM merge_sweep WHERE evaluated = 'merge'") == 3 * 2
    index = warehouse.root / "report" / "index.html"
    assert "figure2_flow_eval-lua.png" in index.read_text()
    assert_browser_shows(warehouse)

    # a rerun after completion does no work and changes nothing
    digest, report_mtime = hashlib.sha256(warehouse.db_path.read_bytes()).hexdigest(), index.stat().st_mtime_ns
    start = time.perf_counter()
    result = run_cli(warehouse, "run", str(file))
    assert result.exit_code == 0, result.output
    assert "0 of 43 steps ran" in result.output and "run_persistence" in result.output, result.output
    assert time.perf_counter() - start < 15
    assert hashlib.sha256(warehouse.db_path.read_bytes()).hexdigest() == digest
    assert index.stat().st_mtime_ns == report_mtime

    # --force redoes one step and what depends on it
    result = invoke("run", str(file), "--warehouse", str(warehouse.root), "--force", "explain-base")
    assert result.exit_code == 0, result.output
    assert "2 of 43 steps ran" in result.output
    result = run_cli(warehouse, "run", str(file), "--force", "nope")
    assert result.exit_code == 1 and "unknown step 'nope' for --force" in result.output


def assert_browser_shows(warehouse):
    """`featstore serve`'s pages over the real chain's warehouse: the lineage, and a sample of every SAE's features."""
    from featstore.browser.app import create_app

    client = create_app(warehouse).test_client()
    lineage = client.get("/").get_data(as_text=True)
    assert all(f"href='model/{m}'" in lineage for m in ("base", "lua", "tinystories", "luastories"))
    for sae in warehouse.query("SELECT id, d_sae FROM saes").to_pylist():
        for feature in range(0, sae["d_sae"], max(1, sae["d_sae"] // 6)):
            page = client.get(f"/sae/{sae['id']}/feature/{feature}")
            assert page.status_code == 200, (sae, feature)
            assert "Decoder-space neighbours" in page.get_data(as_text=True)
            assert "weights (sae_weights.safetensors) are not in the warehouse" not in page.get_data(as_text=True)
