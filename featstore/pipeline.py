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

from featstore import schema
from featstore.db import Database, run as run_query
from featstore.errors import FeatstoreError
from featstore.presets import BASE, LUA, MERGED, STORIES, ModelPreset, RunPreset, model_preset, run_preset, sae_preset
from featstore.warehouse import Warehouse, sql_dir, sql_files


@dataclass
class RunContext:
    """What every step sees: the warehouse, the preset, and the summaries of finished steps."""

    wh: Warehouse
    preset: RunPreset
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
    sql: tuple[str, ...] = ()   # sql/ objects it uses, by name or glob; they and all they reference are hashed
    queries: tuple[str, ...] = ()  # sql/queries/<entity> folders of the named statements it runs (hashed too)
    outputs_exist: Callable[[RunContext], bool] = lambda ctx: True


def _module_source(module: str) -> bytes:
    """Source bytes of a module, or of every module of a package, found without importing it
    (hashing must not load torch)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise FeatstoreError(f"pipeline step needs module {module!r}, which is not installed")
    if spec.submodule_search_locations:
        return b"".join(path.read_bytes() for path in sorted(Path(spec.origin).parent.glob("*.py")))
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
    for name, text in schema.sources(step.sql, sql_files()):
        digest.update(f"{name}={text}".encode())
    for entity in sorted(step.queries):
        for file in sorted(sql_dir().joinpath("queries", entity).iterdir(), key=lambda f: f.name):
            digest.update(f"{entity}/{file.name}={file.read_text()}".encode())
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
    steps_table = Database(ctx.wh).steps
    recorded = steps_table.recorded()
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
        steps_table.start(step.name, digest, ctx.preset.name, step.params)
        start = time.perf_counter()
        result = step.run(ctx, **step.params) or {}
        seconds = time.perf_counter() - start
        steps_table.finish(step.name, result, seconds)
        ctx.summaries[step.name] = result
        records.append({"step": step.name, "status": "ran", "reason": reason, "seconds": round(seconds, 2)})
        log(f"{label}: done in {seconds:.1f} s")
    return records


# -- the paper's experiment as steps ---------------------------------------------------------------

MODELS = (BASE, LUA, STORIES, MERGED)
EDGES = ((BASE, LUA), (BASE, STORIES), (LUA, MERGED), (STORIES, MERGED))


# Evaluation slices: the validation part of each model's training corpus (BabyPython-style mix, Lua,
# stories), tokenized once; every model is ingested on these same tokens.
SLICE_SOURCES = {"eval-python": BASE, "eval-lua": LUA, "eval-stories": STORIES}
SLICES = tuple(SLICE_SOURCES)
HOME_SLICE = {BASE: "eval-python", LUA: "eval-lua", STORIES: "eval-stories", MERGED: "eval-lua"}


def sae_id(model: str) -> str:
    return f"{model}-sae"


def replica_id(model: str, seed: int) -> str:
    return f"{sae_id(model)}-seed{seed}"


def _model_summary(row: dict) -> dict:
    return {"model": row["name"], "path": row["path"], "metrics": row.get("metrics") or {}}


def train_base_model(ctx: RunContext, *, zoo: dict, seed: int) -> dict:
    from featstore.lm import train_base

    row = train_base(ctx.wh, BASE, preset=ModelPreset.from_dict(zoo), seed=seed, device=ctx.device, replace=True)
    return _model_summary(row)


def finetune_model(ctx: RunContext, *, name: str, zoo: dict, seed: int) -> dict:
    from featstore.lm import finetune

    row = finetune(ctx.wh, name, parent=BASE, preset=ModelPreset.from_dict(zoo), seed=seed, device=ctx.device, replace=True)
    return _model_summary(row)


def model_exists(name: str) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        rows = Database(ctx.wh).models.rows_where("name = ?", [name], select="path")
        return bool(rows) and (Path(ctx.wh.resolve(rows[0]["path"])) / "config.json").exists()

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
    have = {r["name"] for r in Database(ctx.wh).corpora.rows_where(select="name")}
    return set(SLICES) <= have


def train_model_sae(ctx: RunContext, *, model: str, sae: str, settings: dict, seed_of: str | None = None) -> dict:
    from featstore.presets import TrainSettings
    from featstore.sae_train import train_sae

    Database(ctx.wh).saes.drop(sae)  # with everything computed from it, so it can be trained again under its id
    row = train_sae(ctx.wh, model, settings=TrainSettings(**settings), sae_id=sae, is_primary=seed_of is None,
                    seed_of=seed_of, device=ctx.device)
    keep = ("mse", "fvu", "l0", "dead_fraction", "ce_loss_recovered")
    return {"sae": sae, "d_sae": row["d_sae"], "metrics": {k: row["metrics"].get(k) for k in keep}}


def sae_settings(preset: RunPreset) -> dict:
    from dataclasses import asdict

    return asdict(sae_preset(preset.sae, **preset.sae_overrides))


def sae_exists(sae: str) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        rows = Database(ctx.wh).saes.rows_where("id = ?", [sae], select="path")
        return bool(rows) and rows[0]["path"] is not None and Path(ctx.wh.resolve(rows[0]["path"])).is_dir()

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
        rows = Database(ctx.wh).partitions.rows_where("sae = ?", [sae], select="corpus, path")
        paths = {r["corpus"]: r["path"] for r in rows}
        return all(c in paths and (ctx.wh.root / paths[c]).exists() for c in slices)

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
        return Database(ctx.wh).correlations.between(parent_sae, child_sae, "all_tokens", slices) == len(slices)

    return check


def match_saes(ctx: RunContext, *, sae_a: str, sae_b: str, slices: list[str]) -> dict:
    """The evidence of every match method for a pair of SAEs (weight cosines, Jaccard, one-to-one assignments)."""
    from featstore.matching import build_evidence

    return build_evidence(ctx.wh, sae_a, sae_b, slices, device=ctx.device)


def evidence_exists(sae_a: str, sae_b: str) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        from featstore.matching import COMPUTED

        found = ctx.wh.scalar("SELECT count(DISTINCT method) FROM match_runs WHERE sae_a = ? AND sae_b = ?", [sae_a, sae_b])
        return found == len(COMPUTED)

    return check


def explain_sae(ctx: RunContext, *, sae: str, corpus: str, top: int, sample: int, seed: int) -> dict:
    """Explain and score, with the offline builtin backend and from scratch, the SAE's most frequent
    features, all that persist across its edges and a sample of the rest (so Figure 6 has both sides)."""
    from featstore.scoring import score

    with ctx.wh.transaction() as con:
        Database(ctx.wh).explanations.drop_for(con, sae=sae)
        features = [r[0] for r in run_query(con, "pipeline/explain_features", sae=sae, corpus=corpus, top=top,
                                            sample=sample, seed=seed).fetchall()]
    result = score(ctx.wh, sae, corpus, features=features, seed=seed)
    return {"corpus": corpus, "features": result["features"], "mean_score": result["mean_score"]}


def scores_exist(sae: str) -> Callable[[RunContext], bool]:
    return lambda ctx: Database(ctx.wh).scores.has_self_scores(sae)


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
    return bool(Database(ctx.wh).merge_sweeps.rows_where(select="t", order_by=None))


ZOO_CODE = ("featstore.lm", "featstore.corpora", "featstore.tokenizer")
SAE_CODE = ("featstore.sae_train", "featstore.saes", "featstore.capture", "featstore.corpora")
MATCH_CODE = ("featstore.matching.evidence", "featstore.matching.cosine", "featstore.matching.policies", "featstore.matching.methods")
INGEST_CODE = ("featstore.ingest", "featstore.capture", "featstore.saes")
EXPLAIN_CODE = ("featstore.scoring", "featstore.sampling", "featstore.backends")
# sql/ objects by name (featstore.schema.sources): moving or renumbering a file never reruns a step
CORRELATE_SQL = ("corr_*", "correlation_runs", "correlations", "best_matches")
EXPLAIN_SQL = ("feature_samples", "persistence", "explanation_samples", "explanations", "scores", "simulations")
MATCH_SQL = ("jaccard_pairs", "pair_evidence", "match_runs", "match_pairs", "match_assignments")


def build_steps(preset: RunPreset, seed: int = 0) -> list[Step]:
    """The experiment in dependency order; each step's params are the inputs its hash covers."""
    from dataclasses import asdict

    zoo = asdict(model_preset(preset.zoo, **preset.zoo_overrides))
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
             after=("merge",), code=("featstore.merge", *ZOO_CODE), sql=("merge_sweep*", "model_validation"),
             outputs_exist=sweep_exists),
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
                 after=(f"sae-{model}", "eval-slices"), code=INGEST_CODE,
                 outputs_exist=partitions_exist(sae, slices)),
        ]
    steps += seed_replica_steps(preset, seed, sae_cfg)
    for parent, child in EDGES:
        pair = {"parent_sae": sae_id(parent), "child_sae": sae_id(child)}
        steps.append(Step(f"correlate-{parent}-{child}", correlate_edge,
                          {**pair, "slices": slices, "r_floor": preset.r_floor},
                          after=(f"ingest-{parent}", f"ingest-{child}"), code=("featstore.correlate", "featstore.statistics"),
                          sql=CORRELATE_SQL, queries=("correlation",),
                          outputs_exist=correlations_exist(*pair.values(), slices)))
    steps += seed_correlation_steps(preset, seed)
    for parent, child in EDGES:
        steps.append(Step(f"match-{parent}-{child}", match_saes,
                          {"sae_a": sae_id(parent), "sae_b": sae_id(child), "slices": slices},
                          after=(f"correlate-{parent}-{child}",), code=MATCH_CODE, sql=MATCH_SQL, queries=("matching",),
                          outputs_exist=evidence_exists(sae_id(parent), sae_id(child))))
    for model in MODELS:
        for k in range(1, preset.seed_replicas + 1):
            steps.append(Step(f"match-{model}-seed{seed + k}", match_saes,
                              {"sae_a": sae_id(model), "sae_b": replica_id(model, seed + k), "slices": [HOME_SLICE[model]]},
                              after=(f"correlate-{model}-seed{seed + k}",), code=MATCH_CODE, sql=MATCH_SQL, queries=("matching",),
                              outputs_exist=evidence_exists(sae_id(model), replica_id(model, seed + k))))
    for model in MODELS:
        edges = tuple(f"correlate-{p}-{c}" for p, c in EDGES if model in (p, c))
        steps.append(Step(f"explain-{model}", explain_sae,
                          {"sae": sae_id(model), "corpus": HOME_SLICE[model], "top": preset.explain_top,
                           "sample": preset.explain_sample, "seed": seed},
                          after=(f"ingest-{model}", *edges), code=EXPLAIN_CODE, sql=EXPLAIN_SQL,
                          queries=("explanations", "scores", "pipeline"),
                          outputs_exist=scores_exist(sae_id(model))))
    steps.append(Step("report", write_report, {}, after=tuple(s.name for s in steps), code=("featstore.report",),
                      sql=("*",), outputs_exist=report_exists))
    return steps


def seed_replica_steps(preset: RunPreset, seed: int, sae_cfg: dict) -> list[Step]:
    """Per model, SAEs differing from its primary one only in seed (same text and batch order), on its own slice."""
    steps = []
    for model in MODELS:
        for replica_seed in range(seed + 1, seed + 1 + preset.seed_replicas):
            sae = replica_id(model, replica_seed)
            settings = {**sae_cfg, "seed": replica_seed, "data_seed": seed}
            steps += [
                Step(f"sae-{model}-seed{replica_seed}", train_model_sae,
                     {"model": model, "sae": sae, "settings": settings, "seed_of": sae_id(model)},
                     after=(f"sae-{model}",), code=SAE_CODE, outputs_exist=sae_exists(sae)),
                Step(f"ingest-{model}-seed{replica_seed}", ingest_model,
                     {"model": model, "sae": sae, "slices": [HOME_SLICE[model]], "batch_size": preset.ingest_batch},
                     after=(f"sae-{model}-seed{replica_seed}", "eval-slices"), code=INGEST_CODE,
                     outputs_exist=partitions_exist(sae, [HOME_SLICE[model]])),
            ]
    return steps


def seed_correlation_steps(preset: RunPreset, seed: int) -> list[Step]:
    """Each seed pair correlated like a lineage edge, on the model's own slice."""
    steps = []
    for model in MODELS:
        for replica_seed in range(seed + 1, seed + 1 + preset.seed_replicas):
            pair = {"parent_sae": sae_id(model), "child_sae": replica_id(model, replica_seed)}
            steps.append(Step(f"correlate-{model}-seed{replica_seed}", correlate_edge,
                              {**pair, "slices": [HOME_SLICE[model]], "r_floor": preset.r_floor},
                              after=(f"ingest-{model}", f"ingest-{model}-seed{replica_seed}"),
                              code=("featstore.correlate", "featstore.statistics"), sql=CORRELATE_SQL, queries=("correlation",),
                              outputs_exist=correlations_exist(*pair.values(), [HOME_SLICE[model]])))
    return steps


def run_pipeline(
    wh: Warehouse,
    preset: str | RunPreset = "tiny",
    *,
    force: Iterable[str] = (),
    seed: int = 0,
    device: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the whole experiment; returns the step records and the summary tables."""
    from featstore.hf import resolve_device

    preset = run_preset(preset)
    ctx = RunContext(wh, preset, str(resolve_device(device)))
    start = time.perf_counter()
    records = run_steps(ctx, build_steps(preset, seed), force=force, log=log)
    return {"steps": records, "seconds": round(time.perf_counter() - start, 2), "summary": run_summary(wh)}


SUMMARY_VIEWS = ("run_models", "run_saes", "run_persistence", "run_scores", "run_steps")


def run_summary(wh: Warehouse) -> dict:
    """The tables printed at the end of a run: models, SAEs, persistence per edge, scores, step times."""
    return {name: wh.query(f"SELECT * FROM {name}") for name in SUMMARY_VIEWS}
