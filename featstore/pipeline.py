"""`featstore run`: the paper's whole experiment as resumable steps with content-hash skipping.

A step is skipped when the hash of its inputs (its parameters, the hashes of the steps it depends on,
and the source of the code it runs) equals the hash recorded when it last finished, and its outputs
still exist. A killed run leaves its step marked `running`, so the next run redoes that step and
skips the finished ones. `force` redoes named steps and everything downstream of them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, sql_dir, sql_files


@dataclass
class RunContext:
    """What every step sees: the warehouse, the preset, and the summaries of finished steps."""

    wh: Warehouse
    preset: "Preset"
    device: str
    summaries: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One unit of work, called as `run(ctx, **params)`; it returns a JSON-able summary.

    `outputs_exist` lets a rerun notice outputs deleted behind the pipeline's back.
    """

    name: str
    run: Callable[..., dict]
    params: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()
    code: tuple[str, ...] = ()  # modules whose source is part of the step's input hash
    sql: tuple[str, ...] = ()   # file-name prefixes of the sql/ files it runs (hashed too)
    outputs_exist: Callable[[RunContext], bool] = lambda ctx: True


def _module_source(module: str) -> bytes:
    """Source bytes of a module, found without importing it (hashing must not load torch)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise FeatstoreError(f"pipeline step needs module {module!r}, which is not installed")
    return Path(spec.origin).read_bytes()


def input_hash(step: Step, upstream: dict[str, str]) -> str:
    """Content hash of everything a step's result depends on."""
    digest = hashlib.sha256()
    digest.update(json.dumps(step.params, sort_keys=True, default=str).encode())
    for name in step.after:
        digest.update(f"{name}={upstream[name]}".encode())
    digest.update(inspect.getsource(step.run).encode())
    for module in sorted(step.code):
        digest.update(_module_source(module))
    for name, text in sql_files():
        if step.sql and name.startswith(step.sql):
            digest.update(f"{name}={text}".encode())
    return digest.hexdigest()[:20]


def _check_graph(steps: Sequence[Step]) -> None:
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            raise FeatstoreError(f"pipeline step {step.name!r} is defined twice")
        missing = [d for d in step.after if d not in seen]
        if missing:
            raise FeatstoreError(f"pipeline step {step.name!r} runs after unknown or later step(s) {missing}")
        seen.add(step.name)


def downstream(steps: Sequence[Step], roots: Iterable[str]) -> set[str]:
    """The named steps plus every step that depends on them, directly or not."""
    names = {s.name for s in steps}
    roots = list(roots)
    unknown = [r for r in roots if r not in names]
    if unknown:
        raise FeatstoreError(f"unknown step {unknown[0]!r} for --force; steps: {', '.join(s.name for s in steps)}")
    closed = set(roots)
    for step in steps:  # steps are in dependency order, so one pass closes the set
        if closed.intersection(step.after):
            closed.add(step.name)
    return closed


def _recorded(wh: Warehouse) -> dict[str, tuple[str, str, dict]]:
    with wh.connect(read_only=True) as con:
        rows = con.execute("SELECT step, input_hash, status, summary FROM pipeline_steps").fetchall()
    return {step: (h, status, json.loads(summary) if summary else {}) for step, h, status, summary in rows}


def _mark(wh: Warehouse, step: str, digest: str, status: str, preset: str, params: dict,
          summary: dict | None = None, seconds: float | None = None) -> None:
    with wh.transaction() as con:
        if status == "running":
            con.execute(
                "INSERT OR REPLACE INTO pipeline_steps (step, input_hash, status, preset, params, started_at)"
                " VALUES (?, ?, 'running', ?, ?, current_timestamp)",
                [step, digest, preset, json.dumps(params, sort_keys=True, default=str)],
            )
        else:
            con.execute(
                "UPDATE pipeline_steps SET status = 'done', summary = ?, seconds = ?, finished_at = current_timestamp"
                " WHERE step = ?",
                [json.dumps(summary, default=str), seconds, step],
            )


def _why_run(step: Step, ctx: RunContext, old: tuple | None, digest: str, forced: set[str]) -> str | None:
    """Why a step must run, or None when its recorded result still stands."""
    if step.name in forced:
        return "forced"
    if old is None:
        return "new"
    if old[1] != "done":
        return "unfinished"
    if old[0] != digest:
        return "inputs changed"
    if not step.outputs_exist(ctx):
        return "outputs missing"
    return None


def run_steps(
    ctx: RunContext,
    steps: Sequence[Step],
    *,
    force: Iterable[str] = (),
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Run `steps` in order, skipping those whose inputs are unchanged; returns one record per step."""
    _check_graph(steps)
    forced = downstream(steps, force)
    with ctx.wh.connect():  # applies pending schema files; later reads use read-only connections
        pass
    recorded = _recorded(ctx.wh)
    hashes: dict[str, str] = {}
    records = []
    for i, step in enumerate(steps, 1):
        digest = hashes[step.name] = input_hash(step, hashes)
        old = recorded.get(step.name)
        label = f"[{i}/{len(steps)}] {step.name}"
        reason = _why_run(step, ctx, old, digest, forced)
        if reason is None:
            ctx.summaries[step.name] = old[2]
            records.append({"step": step.name, "status": "skipped", "reason": "unchanged", "seconds": 0.0})
            log(f"{label}: unchanged, skipped")
            continue
        log(f"{label}: running ({reason})")
        _mark(ctx.wh, step.name, digest, "running", ctx.preset.name, step.params)
        start = time.perf_counter()
        result = step.run(ctx, **step.params) or {}
        seconds = time.perf_counter() - start
        _mark(ctx.wh, step.name, digest, "done", ctx.preset.name, step.params, result, seconds)
        ctx.summaries[step.name] = result
        records.append({"step": step.name, "status": "ran", "reason": reason, "seconds": round(seconds, 2)})
        log(f"{label}: done in {seconds:.1f} s")
    return records


# -- the paper's experiment as steps ---------------------------------------------------------------

BASE, LUA, STORIES, MERGED = "base", "lua", "tinystories", "luastories"
MODELS = (BASE, LUA, STORIES, MERGED)
EDGES = ((BASE, LUA), (BASE, STORIES), (LUA, MERGED), (STORIES, MERGED))


@dataclass(frozen=True)
class Preset:
    """Pipeline-level sizes; model and SAE sizes come from the zoo's and the SAE trainer's presets."""

    name: str
    zoo: str                      # featstore.lm preset: model shapes, corpora, token budgets
    sae: str                      # featstore.sae_train preset
    zoo_overrides: dict = field(default_factory=dict)
    sae_overrides: dict = field(default_factory=dict)
    eval_tokens: int = 20_000     # tokens per evaluation slice
    merge_t: float = 0.58
    sweep_steps: int = 11
    sweep_eval_tokens: int | None = None  # validation tokens per domain and t (None: the zoo preset's)
    explain_top: int = 24         # most frequently firing features explained per SAE
    explain_sample: int = 48      # plus every persisting feature and this many others per edge and side
    ingest_batch: int = 16
    r_floor: float = 0.2


PRESETS = {
    "tiny": Preset("tiny", zoo="tiny", sae="tiny"),
    "paper": Preset("paper", zoo="paper", sae="paper", eval_tokens=120_000, explain_top=200, ingest_batch=32),
}


# Evaluation slices: the validation part of each model's training corpus (BabyPython-style mix, Lua,
# stories), tokenized once; every model is ingested on these same tokens.
SLICE_SOURCES = {"eval-python": BASE, "eval-lua": LUA, "eval-stories": STORIES}
SLICES = tuple(SLICE_SOURCES)
HOME_SLICE = {BASE: "eval-python", LUA: "eval-lua", STORIES: "eval-stories", MERGED: "eval-lua"}


def sae_id(model: str) -> str:
    return f"{model}-sae"


def _model_summary(row: dict) -> dict:
    return {"model": row["name"], "path": row["path"], "metrics": row.get("metrics") or {}}


def train_base_model(ctx: RunContext, *, zoo: dict, seed: int) -> dict:
    from featstore.lm import preset_from_dict, train_base

    row = train_base(ctx.wh, BASE, preset=preset_from_dict(zoo), seed=seed, device=ctx.device, replace=True)
    return _model_summary(row)


def finetune_model(ctx: RunContext, *, name: str, zoo: dict, seed: int) -> dict:
    from featstore.lm import finetune, preset_from_dict

    row = finetune(ctx.wh, name, parent=BASE, preset=preset_from_dict(zoo), seed=seed, device=ctx.device, replace=True)
    return _model_summary(row)


def model_exists(name: str) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        path = ctx.wh.scalar("SELECT path FROM models WHERE name = ?", [name])
        return path is not None and (Path(path) / "config.json").exists()

    return check


def add_eval_slices(ctx: RunContext, *, zoo: dict, tokens: int) -> dict:
    """Tokenize the validation part of each model's training corpus, with the family's tokenizer."""
    from featstore.corpus import add_corpus
    from featstore.registry import get_model

    tokenizer = get_model(ctx.wh, BASE)["path"]
    slices = {}
    for name, model in SLICE_SOURCES.items():
        spec = zoo["corpora"][model]
        row = add_corpus(ctx.wh, name, spec, tokenizer, max_tokens=tokens, part="validation", replace=True)
        slices[name] = {"source": spec, "tokens": row["n_tokens"], "documents": row["n_documents"]}
    return slices


def slices_exist(ctx: RunContext) -> bool:
    have = set(ctx.wh.query("SELECT name FROM corpora").column(0).to_pylist())
    return set(SLICES) <= have


def forget_sae(wh: Warehouse, sae: str) -> None:
    """Remove an SAE and everything computed from it, so it can be trained again under the same id."""
    from featstore.registry import drop_dependents

    with wh.transaction() as con:
        files = drop_dependents(wh, con, sae=sae)
        _forget_explanations(con, sae)
        con.execute("DELETE FROM saes WHERE id = ?", [sae])
    for path in files:
        path.unlink(missing_ok=True)


def _forget_explanations(con, sae: str) -> None:
    scores = "SELECT id FROM scores WHERE sae = ? OR source_sae = ?"
    con.execute(f"DELETE FROM simulations WHERE score_id IN ({scores})", [sae, sae])
    con.execute("DELETE FROM scores WHERE sae = ? OR source_sae = ?", [sae, sae])
    for table in ("explanations", "explanation_samples"):
        con.execute(f"DELETE FROM {table} WHERE sae = ?", [sae])


def train_model_sae(ctx: RunContext, *, model: str, sae: str, settings: dict) -> dict:
    from featstore.sae_train import TrainSettings, train_sae

    forget_sae(ctx.wh, sae)
    row = train_sae(ctx.wh, model, settings=TrainSettings(**settings), sae_id=sae, is_primary=True, device=ctx.device)
    keep = ("mse", "fvu", "l0", "dead_fraction", "ce_loss_recovered")
    return {"sae": sae, "d_sae": row["d_sae"], "metrics": {k: row["metrics"].get(k) for k in keep}}


def sae_settings(preset: Preset) -> dict:
    from dataclasses import asdict

    from featstore.sae_train import settings_for

    return asdict(settings_for(preset.sae, **preset.sae_overrides))


def sae_exists(sae: str) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        path = ctx.wh.scalar("SELECT path FROM saes WHERE id = ?", [sae])
        return path is not None and Path(path).is_dir()

    return check


def ingest_model(ctx: RunContext, *, model: str, sae: str, slices: list[str], batch_size: int) -> dict:
    from featstore.ingest import ingest

    done = {}
    for corpus in slices:
        result = ingest(ctx.wh, model, corpus=corpus, sae_id=sae, batch_size=batch_size, device=ctx.device)
        done[corpus] = {"rows": result["rows"], "tokens_per_s": result["tokens_per_s"]}
    return done


def partitions_exist(sae: str, slices: list[str]) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        rows = ctx.wh.query("SELECT corpus, path FROM activation_partitions WHERE sae = ?", [sae]).to_pylist()
        paths = {r["corpus"]: r["path"] for r in rows}
        return all(c in paths and Path(paths[c]).exists() for c in slices)

    return check


def correlate_edge(ctx: RunContext, *, parent_sae: str, child_sae: str, slices: list[str], r_floor: float) -> dict:
    from featstore.correlate import correlate

    done = {}
    for corpus in slices:
        run = correlate(ctx.wh, parent_sae, child_sae, corpus=corpus, stat="all_tokens", r_floor=r_floor)
        done[corpus] = {k: run.get(k) for k in ("n_pairs", "seconds")}
    return done


def correlations_exist(parent_sae: str, child_sae: str, slices: list[str]) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        have = ctx.wh.scalar(
            "SELECT count(DISTINCT corpus) FROM correlation_runs WHERE sae_a = ? AND sae_b = ? AND stat = 'all_tokens'"
            " AND list_contains(?, corpus)",
            [parent_sae, child_sae, slices],
        )
        return have == len(slices)

    return check


def explain_sae(ctx: RunContext, *, sae: str, corpus: str, top: int, sample: int, seed: int) -> dict:
    """Explain and score, with the offline builtin backend and from scratch, the SAE's most frequent
    features, all that persist across its edges and a sample of the rest (so Figure 6 has both sides)."""
    from featstore.scoring import score

    query = sql_dir().joinpath("queries", "pipeline", "explain_features.sql").read_text()
    with ctx.wh.transaction() as con:
        _forget_explanations(con, sae)
        params = {"sae": sae, "corpus": corpus, "top": top, "sample": sample, "seed": seed}
        features = [r[0] for r in con.execute(query, params).fetchall()]
    result = score(ctx.wh, sae, corpus, features=features, seed=seed)
    return {"corpus": corpus, "features": result["features"], "mean_score": result["mean_score"]}


def scores_exist(sae: str) -> Callable[[RunContext], bool]:
    return lambda ctx: bool(ctx.wh.scalar("SELECT count(*) FROM scores WHERE sae = ? AND kind = 'self'", [sae]))


def write_report(ctx: RunContext) -> dict:
    from featstore.report import build_report

    return {"path": str(build_report(ctx.wh))}


def report_exists(ctx: RunContext) -> bool:
    return (ctx.wh.root / "report" / "index.html").exists()


def merge_fine_tunes(ctx: RunContext, *, t: float) -> dict:
    from featstore.merge import merge_models

    row = merge_models(ctx.wh, LUA, STORIES, method="slerp", t=t, name=MERGED, device=ctx.device, replace=True)
    return _model_summary(row)


def sweep_merges(ctx: RunContext, *, steps: int, eval_tokens: int | None, seed: int) -> dict:
    from featstore.merge import merge_sweep

    result = merge_sweep(ctx.wh, LUA, STORIES, steps=steps, eval_tokens=eval_tokens, device=ctx.device, seed=seed)
    return {"points": steps, "plot": str(result["plot"]), "monotone": result.get("monotone")}


def sweep_exists(ctx: RunContext) -> bool:
    return bool(ctx.wh.scalar("SELECT count(*) FROM merge_sweep"))


ZOO_CODE = ("featstore.lm", "featstore.corpora", "featstore.tokenizer")
SAE_CODE = ("featstore.sae_train", "featstore.sae", "featstore.capture", "featstore.corpora")
EXPLAIN_CODE = ("featstore.scoring", "featstore.sampling", "featstore.backends")


def build_steps(preset: Preset, seed: int = 0) -> list[Step]:
    """The experiment in dependency order; each step's params are the inputs its hash covers."""
    from dataclasses import asdict

    from featstore.lm import get_preset

    zoo = asdict(get_preset(preset.zoo, **preset.zoo_overrides))
    slices = list(SLICES)
    model_step = {BASE: "train-base", LUA: f"finetune-{LUA}", STORIES: f"finetune-{STORIES}", MERGED: "merge"}
    steps = [
        Step("train-base", train_base_model, {"zoo": zoo, "seed": seed}, code=ZOO_CODE, outputs_exist=model_exists(BASE)),
        *(Step(model_step[name], finetune_model, {"name": name, "zoo": zoo, "seed": seed}, after=("train-base",),
               code=ZOO_CODE, outputs_exist=model_exists(name)) for name in (LUA, STORIES)),
        Step("merge", merge_fine_tunes, {"t": preset.merge_t}, after=(model_step[LUA], model_step[STORIES]),
             code=("featstore.merge", *ZOO_CODE), outputs_exist=model_exists(MERGED)),
        Step("merge-sweep", sweep_merges,
             {"steps": preset.sweep_steps, "eval_tokens": preset.sweep_eval_tokens, "seed": seed},
             after=("merge",), code=("featstore.merge", *ZOO_CODE), sql=("5",), outputs_exist=sweep_exists),
        Step("eval-slices", add_eval_slices, {"zoo": zoo, "tokens": preset.eval_tokens}, after=("train-base",),
             code=("featstore.corpus", "featstore.corpora", "featstore.sources"), outputs_exist=slices_exist),
    ]
    sae_cfg = {**sae_settings(preset), "seed": seed}
    for model in MODELS:
        sae = sae_id(model)
        steps += [
            Step(f"sae-{model}", train_model_sae, {"model": model, "sae": sae, "settings": sae_cfg},
                 after=(model_step[model],), code=SAE_CODE, outputs_exist=sae_exists(sae)),
            Step(f"ingest-{model}", ingest_model,
                 {"model": model, "sae": sae, "slices": slices, "batch_size": preset.ingest_batch},
                 after=(f"sae-{model}", "eval-slices"), code=("featstore.ingest", "featstore.capture"),
                 outputs_exist=partitions_exist(sae, slices)),
        ]
    for parent, child in EDGES:
        pair = {"parent_sae": sae_id(parent), "child_sae": sae_id(child)}
        steps.append(Step(f"correlate-{parent}-{child}", correlate_edge,
                          {**pair, "slices": slices, "r_floor": preset.r_floor},
                          after=(f"ingest-{parent}", f"ingest-{child}"), code=("featstore.correlate",), sql=("22", "23"),
                          outputs_exist=correlations_exist(*pair.values(), slices)))
    for model in MODELS:
        edges = tuple(f"correlate-{p}-{c}" for p, c in EDGES if model in (p, c))
        steps.append(Step(f"explain-{model}", explain_sae,
                          {"sae": sae_id(model), "corpus": HOME_SLICE[model], "top": preset.explain_top,
                           "sample": preset.explain_sample, "seed": seed},
                          after=(f"ingest-{model}", *edges), code=EXPLAIN_CODE, sql=("20", "41"),
                          outputs_exist=scores_exist(sae_id(model))))
    steps.append(Step("report", write_report, {}, after=tuple(s.name for s in steps), code=("featstore.report",),
                      sql=("",), outputs_exist=report_exists))
    return steps


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_pipeline(
    wh: Warehouse,
    preset: str | Preset = "tiny",
    *,
    force: Iterable[str] = (),
    seed: int = 0,
    device: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the whole experiment; returns the step records and the summary tables."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise FeatstoreError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    ctx = RunContext(wh, preset, device or default_device())
    start = time.perf_counter()
    records = run_steps(ctx, build_steps(preset, seed), force=force, log=log)
    return {"steps": records, "seconds": round(time.perf_counter() - start, 2), "summary": run_summary(wh)}


SUMMARY_VIEWS = ("run_models", "run_saes", "run_persistence", "run_scores", "run_steps")


def run_summary(wh: Warehouse) -> dict:
    """The tables printed at the end of a run: models, SAEs, persistence per edge, scores, step times."""
    return {name: wh.query(f"SELECT * FROM {name}") for name in SUMMARY_VIEWS}
