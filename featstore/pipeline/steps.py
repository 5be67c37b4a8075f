"""`featstore run`: an experiment (featstore.pipeline.experiment) as resumable steps with content-hash skipping.

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
from featstore.pipeline.experiment import (
    INITS,
    MAIN_SAE,
    SAE,
    CrosscoderEntry,
    Experiment,
    Model,
    Sweep,
    load_experiment,
)
from featstore.warehouse import Warehouse, partition_files, schema, sql_dir, sql_files
from featstore.warehouse.queries import run as run_query


@dataclass
class RunContext:
    """What every step sees: the warehouse, the experiment, and the summaries of finished steps."""

    wh: Warehouse
    experiment: Experiment
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
    # steps of one group due in the same run go in one call, `together(ctx, [params, ...])` -> summaries,
    # at the first one's place (e.g. a model's SAEs: one pass over its activations trains them all)
    group: str | None = None
    together: Callable[[RunContext, list[dict]], list[dict]] | None = None


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
    steps_table = ctx.wh.steps
    recorded = steps_table.recorded()
    hashes: dict[str, str] = {}
    for step in steps:
        hashes[step.name] = input_hash(step, hashes)
    records: dict[str, dict] = {}
    for i, step in enumerate(steps, 1):
        label = f"[{i}/{len(steps)}] {step.name}"
        if step.name in records:  # ran with an earlier step of its group
            continue
        reason = _why_run(step, ctx, recorded.get(step.name), hashes[step.name], forced)
        if reason is None:
            ctx.summaries[step.name] = recorded[step.name][2]
            records[step.name] = {"step": step.name, "status": "skipped", "reason": "unchanged", "seconds": 0.0}
            log(f"{label}: unchanged, skipped")
            continue
        due = [(step, reason), *_due_with(step, steps[i:], set(records), lambda s: _why_run(
            s, ctx, recorded.get(s.name), hashes[s.name], forced))]
        log(f"{label}: running ({reason})" + "".join(f", with {s.name} ({why})" for s, why in due[1:]))
        for member, _ in due:
            steps_table.start(member.name, hashes[member.name], ctx.experiment.name, member.params)
        start = time.perf_counter()
        results = _run_due(ctx, [member for member, _ in due])
        seconds = (time.perf_counter() - start) / len(due)  # a shared pass's time, split evenly
        for (member, why), result in zip(due, results):
            steps_table.finish(member.name, result, seconds)
            ctx.summaries[member.name] = result
            records[member.name] = {"step": member.name, "status": "ran", "reason": why, "seconds": round(seconds, 2)}
        log(f"{label}: done in {seconds * len(due):.1f} s")
    return [records[s.name] for s in steps]


def _due_with(step: Step, later: Sequence[Step], finished: set[str], why_run: Callable[[Step], str | None]
              ) -> list[tuple[Step, str]]:
    """Later steps of `step`'s group that must run too and can (every step they follow is done or joins them)."""
    if step.group is None:
        return []
    ready, due = finished | {step.name}, []
    for other in later:
        reason = why_run(other) if other.group == step.group and ready.issuperset(other.after) else None
        if reason is not None:
            due.append((other, reason))
            ready.add(other.name)
    return due


def _run_due(ctx: RunContext, steps: list[Step]) -> list[dict]:
    if len(steps) == 1:
        return [steps[0].run(ctx, **steps[0].params) or {}]
    return steps[0].together(ctx, [s.params for s in steps])


# -- an experiment as steps --------------------------------------------------------------------------


def _model_summary(row: dict) -> dict:
    return {"model": row["name"], "path": row["path"], "metrics": row.get("metrics") or {}}


def train_model(ctx: RunContext, *, name: str, corpus: str, zoo: dict, seed: int,
                tokenizer_corpora: list[str] | None = None) -> dict:
    from featstore.models.lm import train_base
    from featstore.models.presets import ModelPreset

    row = train_base(ctx.wh, name, preset=ModelPreset.from_dict(zoo), corpus=corpus, seed=seed,
                     tok_corpora=tokenizer_corpora, device=ctx.device, replace=True)
    return _model_summary(row)


def finetune_model(ctx: RunContext, *, name: str, parent: str, corpus: str, zoo: dict, seed: int) -> dict:
    from featstore.models.lm import finetune
    from featstore.models.presets import ModelPreset

    row = finetune(ctx.wh, name, parent=parent, corpus=corpus, preset=ModelPreset.from_dict(zoo), seed=seed,
                   device=ctx.device, replace=True)
    return _model_summary(row)


def merge_model(ctx: RunContext, *, name: str, parents: list[str], method: str, t: float) -> dict:
    from featstore.models.merge import merge_models

    row = merge_models(ctx.wh, *parents, method=method, t=t, name=name, device=ctx.device, replace=True)
    return _model_summary(row)


def import_model(ctx: RunContext, *, name: str, path: str, parents: list[str], relation: str, corpus: str | None,
                 zoo: dict) -> dict:
    """Register an HF folder or hub id with its lineage, then measure it on the experiment's domains."""
    from featstore.models.catalog import register_model
    from featstore.models.lm import evaluate_model
    from featstore.models.presets import ModelPreset

    register_model(ctx.wh, name, path, kind="imported", parents=parents, relation=relation if parents else None,
                   train_corpus=corpus, replace=True)
    return _model_summary(evaluate_model(ctx.wh, name, preset=ModelPreset.from_dict(zoo), device=ctx.device))


def model_exists(name: str) -> Callable[[RunContext], bool]:
    """The model is registered and its folder is there (a hub id has no folder to check)."""
    def check(ctx: RunContext) -> bool:
        rows = ctx.wh.models.rows_where("name = ?", [name], select="path")
        return bool(rows) and (Path(ctx.wh.resolve(rows[0]["path"])) / "config.json").exists()

    return check


def add_eval_slices(ctx: RunContext, *, slices: dict[str, dict]) -> dict:
    """Tokenize each slice with its family's tokenizer; a slice already stored from the same text,
    sizes and tokenizer is kept, so adding a slice leaves the others (and their activations) alone."""
    from featstore.models.catalog import get_model
    from featstore.text.slices import add_corpus, get_corpus

    done = {}
    for name, spec in slices.items():
        model = get_model(ctx.wh, spec["tokenizer_from"])
        if not _slice_is_current(ctx.wh, name, spec, model["tokenizer"]):
            add_corpus(ctx.wh, name, spec["source"], model["path"], max_tokens=spec["tokens"], part=spec["part"],
                       doc_tokens=spec["doc_tokens"], min_docs=spec["min_docs"], replace=True)
        row = get_corpus(ctx.wh, name)
        done[name] = {"source": spec["source"], "tokens": row["n_tokens"], "documents": row["n_documents"]}
    return done


def _slice_is_current(wh: Warehouse, name: str, spec: dict, tokenizer: str) -> bool:
    row = wh.corpora.rows_where("name = ?", [name], select="source, tokenizer, meta")
    if not row:
        return False
    meta = row[0]["meta"]
    wanted = {"part": spec["part"], "max_tokens": spec["tokens"], "doc_tokens": spec["doc_tokens"],
              "min_docs": spec["min_docs"]}
    return (row[0]["source"], row[0]["tokenizer"]) == (spec["source"], tokenizer) and all(
        meta.get(k) == v for k, v in wanted.items())


def slices_exist(names: list[str]) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        return set(names) <= {r["name"] for r in ctx.wh.corpora.rows_where(select="name")}

    return check


def forget_model(wh: Warehouse, model: str) -> None:
    """Remove a model, its SAEs and the crosscoders that read it and everything computed from them, its
    sweeps and its folder (`--prune`)."""
    import shutil
    readers = [r["sae"] for r in wh.crosscoders.rows_where("parent_model = ?", [model], select="sae")]
    for sae in [r["id"] for r in wh.saes.rows_where("model = ?", [model], select="id")] + readers:
        wh.saes.drop(sae)
    path = wh.models.rows_where("name = ?", [model], select="path")
    with wh.transaction() as con:
        run_query(con, "pipeline/forget_model", name=model)
    if path and Path(path[0]["path"]).resolve().is_relative_to(wh.root.resolve()):
        shutil.rmtree(path[0]["path"], ignore_errors=True)


def train_model_sae(ctx: RunContext, *, model: str, sae: str, settings: dict, seed_of: str | None = None,
                    init_from: str | None = None, primary: bool | None = None) -> dict:
    """One SAE's step run alone: its group's call with it as the only member."""
    return train_model_saes(ctx, [{"model": model, "sae": sae, "settings": settings, "seed_of": seed_of,
                                   "init_from": init_from, "primary": primary}])[0]


def train_model_saes(ctx: RunContext, steps: list[dict]) -> list[dict]:
    """Train SAEs of one model (the params of their steps) in one pass over its activations
    (featstore.saes.training.train_saes); only a model's main SAE is primary (`primary` False marks the others
    that are neither seed replicas nor lineage-initialised)."""
    from featstore.saes.presets import TrainSettings
    from featstore.saes.training import SAERun, train_saes

    for step in steps:  # with everything computed from them, so they can be trained again under their ids
        ctx.wh.saes.drop(step["sae"])
    main = [s.get("seed_of") is None and not s.get("init_from") and s.get("primary") is not False for s in steps]
    runs = [SAERun(s["sae"], TrainSettings(**s["settings"]), is_primary=primary, seed_of=s.get("seed_of"),
                   init_from=s.get("init_from")) for s, primary in zip(steps, main)]
    keep = ("mse", "fvu", "l0", "dead_fraction", "ce_loss_recovered")
    return [{"sae": row["id"], "d_sae": row["d_sae"], "metrics": {k: row["metrics"].get(k) for k in keep}}
            for row in train_saes(ctx.wh, steps[0]["model"], runs, device=ctx.device)]


def import_sae(ctx: RunContext, *, model: str, sae: str, path: str, primary: bool) -> dict:
    from featstore.saes.catalog import add_sae_folder

    ctx.wh.saes.drop(sae)
    row = add_sae_folder(ctx.wh, sae, model, path, is_primary=primary)
    return {"sae": sae, "d_sae": row["d_sae"], "metrics": row.get("metrics") or {}}


def sae_exists(sae: str) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        rows = ctx.wh.saes.rows_where("id = ?", [sae], select="path")
        return bool(rows) and rows[0]["path"] is not None and Path(ctx.wh.resolve(rows[0]["path"])).is_dir()

    return check


def ingest_model(ctx: RunContext, *, model: str, sae: str, slices: list[str], batch_size: int) -> dict:
    from featstore.activations.ingest import ingest_corpora

    done = ingest_corpora(ctx.wh, model, slices, sae_id=sae, batch_size=batch_size, device=ctx.device)
    return {r["corpus"]: {"rows": r["rows"], "tokens_per_s": r["tokens_per_s"]} for r in done}


def partitions_exist(sae: str, slices: list[str]) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        rows = ctx.wh.partitions.rows_where("sae = ?", [sae], select="corpus, path")
        paths = {r["corpus"]: r["path"] for r in rows}
        return all(c in paths and all(f.exists() for f in partition_files(ctx.wh.root, paths[c])) for c in slices)

    return check


def correlate_edge(ctx: RunContext, *, parent_sae: str, child_sae: str, slices: list[str], r_floor: float,
                   stats: list[str] = ("all_tokens",)) -> dict:
    from featstore.correlation.correlate import correlate_corpora

    done = {}
    for stat in stats:
        for run in correlate_corpora(ctx.wh, parent_sae, child_sae, slices, stat=stat, r_floor=r_floor):
            done[run["corpus"] if stat == "all_tokens" else f"{run['corpus']}/{stat}"] = {
                k: run.get(k) for k in ("n_pairs", "seconds")}
    return done


def correlations_exist(parent_sae: str, child_sae: str, slices: list[str], stats: list[str]) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        runs = ctx.wh.correlations
        return all(runs.between(parent_sae, child_sae, stat, slices) == len(slices) for stat in stats)

    return check


def match_saes(ctx: RunContext, *, sae_a: str, sae_b: str, slices: list[str], methods: list[str] | None = None) -> dict:
    """The evidence of every match method for a pair of SAEs (weight cosines, Jaccard, the crosscoder's
    where the experiment trains one for the pair, one-to-one assignments); `methods` None: those the
    warehouse has what they need for."""
    from featstore.matching import build_evidence

    return build_evidence(ctx.wh, sae_a, sae_b, slices, methods=methods, device=ctx.device)


def evidence_exists(sae_a: str, sae_b: str, methods: list[str] | None) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        from featstore.matching.evidence import applicable_methods

        asked = list(methods or applicable_methods(ctx.wh, sae_a, sae_b))
        return ctx.wh.named_scalar("pipeline/evidence_methods", sae_a=sae_a, sae_b=sae_b, methods=asked) == len(asked)

    return check


def check_causally(ctx: RunContext, *, sae_a: str, sae_b: str, slices: list[str], settings: dict) -> dict:
    """The causal check of the edge's best matches on each slice (featstore.matching.causal)."""
    from featstore.matching.causal import CausalSettings, causal_evidence

    done = {}
    for corpus in slices:
        result = causal_evidence(ctx.wh, sae_a, sae_b, corpus, settings=CausalSettings(**settings), device=ctx.device)
        done[corpus] = {k: result[k] for k in ("pairs", "tested", "agreeing", "seconds")}
    return done


def causal_runs_exist(sae_a: str, sae_b: str, slices: list[str]) -> Callable[[RunContext], bool]:
    def check(ctx: RunContext) -> bool:
        return ctx.wh.matches.between(sae_a, sae_b, "causal", slices) == len(slices)

    return check


def train_crosscoder(ctx: RunContext, *, crosscoder: str, parent: str, child: str, settings: dict, source: str | None,
                     slices: list[str]) -> dict:
    """Train (again) a crosscoder of the experiment, classify its latents and store its activations on its slices."""
    from featstore.crosscoders import CrosscoderSettings, catalog

    row = catalog.train(ctx.wh, parent, child, settings=CrosscoderSettings(**settings), crosscoder_id=crosscoder,
                        source=source, replace=True, device=ctx.device)
    done = {s: catalog.ingest(ctx.wh, crosscoder, s, device=ctx.device)["rows"] for s in slices}
    return {"crosscoder": crosscoder, "d_sae": row["d_sae"], "metrics": row["metrics"], "rows": done}


def explain_sae(ctx: RunContext, *, sae: str, corpus: str, top: int, sample: int, seed: int) -> dict:
    """Explain and score, with the offline builtin backend and from scratch, the SAE's most frequent
    features, all that persist across its edges and a sample of the rest (so Figure 6 has both sides)."""
    from featstore.interpret.scoring import score

    with ctx.wh.transaction() as con:
        ctx.wh.explanations.drop_for(con, sae=sae)
        features = [r[0] for r in run_query(con, "pipeline/explain_features", sae=sae, corpus=corpus, top=top,
                                            sample=sample, seed=seed).fetchall()]
    result = score(ctx.wh, sae, corpus, features=features, seed=seed)
    return {"corpus": corpus, "features": result["features"], "mean_score": result["mean_score"]}


def scores_exist(sae: str) -> Callable[[RunContext], bool]:
    return lambda ctx: ctx.wh.scores.has_self_scores(sae)


def write_report(ctx: RunContext) -> dict:
    from featstore.report.build import build_report

    return {"path": str(build_report(ctx.wh))}


def report_exists(ctx: RunContext) -> bool:
    return (ctx.wh.root / "report" / "index.html").exists()


def sweep_merges(ctx: RunContext, *, models: list[str], method: str, steps: int, eval_tokens: int | None, seed: int) -> dict:
    from featstore.models.merge import merge_sweep

    result = merge_sweep(ctx.wh, *models, steps=steps, method=method, eval_tokens=eval_tokens, device=ctx.device,
                         seed=seed)
    return {"points": steps, "plot": str(result["plot"]), "monotone": result.get("monotone")}


def sweep_exists(models: list[str], method: str) -> Callable[[RunContext], bool]:
    return lambda ctx: ctx.wh.merge_sweeps.exists(*models, method)


ZOO_CODE = ("featstore.models.lm", "featstore.text.mixtures", "featstore.text.tokenizer")
SAE_CODE = ("featstore.saes.training", "featstore.saes", "featstore.models.capture", "featstore.text.mixtures")
MATCH_CODE = ("featstore.matching.evidence", "featstore.matching.cosine", "featstore.matching.policies", "featstore.matching.methods",
              "featstore.matching.crosscoder")
CAUSAL_CODE = ("featstore.matching.causal", "featstore.matching.effects", "featstore.models.capture")
CROSSCODER_CODE = ("featstore.crosscoders", "featstore.models.capture", "featstore.activations.ingest")
INGEST_CODE = ("featstore.activations.ingest", "featstore.models.capture", "featstore.saes")
CORRELATE_CODE = ("featstore.correlation.correlate", "featstore.correlation.statistics", "featstore.correlation.inputs",
                  "featstore.correlation.engines.sql", "featstore.correlation.engines.torch",  # auto: sql on CPU, torch on CUDA
                  "featstore.correlation.engines.sides")
EXPLAIN_CODE = ("featstore.interpret.scoring", "featstore.interpret.sampling", "featstore.interpret.backends")
SLICE_STEP = "eval-slices"
# sql/ objects by name (featstore.warehouse.schema.sources): moving or renumbering a file never reruns a step
CORRELATE_SQL = ("corr_*", "correlation_runs", "correlations", "best_matches")
EXPLAIN_SQL = ("feature_samples", "persistence", "explanation_samples", "explanations", "scores", "simulations")
MATCH_SQL = ("jaccard_pairs", "pair_evidence", "match_runs", "match_pairs", "match_assignments")


def model_zoo(exp: Experiment, model: Model) -> dict:
    """The model preset a trained model uses: the family's, with the experiment's corpora and
    domains and the model's own schedule (so editing one model's schedule reruns that model only)."""
    from dataclasses import asdict, replace

    from featstore.models.presets import model_preset

    shapes = {k: v for k, v in exp.family_overrides.items() if k not in ("base", "finetune")}
    preset = model_preset(exp.family, tokenizer=exp.tokenizer, corpora=exp.training_corpora(), domains=exp.domains(),
                        **exp.tokenizer_overrides, **shapes)
    stage = "base" if model.kind == "train" else "finetune"
    schedules = {s: replace(getattr(preset, s), **exp.family_overrides.get(s, {})) for s in ("base", "finetune")}
    schedules[stage] = replace(schedules[stage], **model.schedule)
    return asdict(replace(preset, **schedules))


def model_step(exp: Experiment, model: Model) -> Step:
    after = tuple(exp.models[p].step for p in model.parents)
    exists = model_exists(model.name)
    if model.kind == "train":
        params = {"name": model.name, "corpus": model.corpus, "zoo": model_zoo(exp, model), "seed": exp.seed}
        if exp.tokenizer_corpora is not None:
            params["tokenizer_corpora"] = list(exp.tokenizer_corpora)
        return Step(model.step, train_model, params, code=ZOO_CODE, outputs_exist=exists)
    if model.kind == "finetune":
        params = {"name": model.name, "parent": model.parents[0], "corpus": model.corpus, "zoo": model_zoo(exp, model),
                  "seed": exp.seed}
        return Step(model.step, finetune_model, params, after=after, code=ZOO_CODE, outputs_exist=exists)
    if model.kind == "merge":
        params = {"name": model.name, "parents": list(model.parents), "method": model.method, "t": model.t}
        return Step(model.step, merge_model, params, after=after, code=("featstore.models.merge", *ZOO_CODE), outputs_exist=exists)
    params = {"name": model.name, "path": model.path, "parents": list(model.parents), "relation": model.relation,
              "corpus": model.corpus, "zoo": model_zoo(exp, model)}
    return Step(model.step, import_model, params, after=after, code=("featstore.models.catalog", *ZOO_CODE), outputs_exist=exists)


def sweep_step(exp: Experiment, sweep: Sweep) -> Step:
    pair = sorted(sweep.models)
    merges = tuple(m.step for m in exp.models.values() if m.kind == "merge" and sorted(m.parents) == pair)
    after = merges or tuple(exp.models[m].step for m in sweep.models)
    params = {"models": list(sweep.models), "method": sweep.method, "steps": sweep.steps,
              "eval_tokens": sweep.eval_tokens, "seed": exp.seed}
    return Step(sweep.name, sweep_merges, params, after=after, code=("featstore.models.merge", *ZOO_CODE),
                sql=("merge_sweep*", "model_validation"),
                outputs_exist=sweep_exists(list(sweep.models), sweep.method))


def slices_step(exp: Experiment) -> Step:
    """Every slice is tokenized with the tokenizer of the models ingested on it (their base or import)."""
    specs, roots = {}, []
    for s in exp.slices.values():
        root = exp.root(s.models[0]) if s.models else next(iter(exp.models))
        roots.append(exp.models[root].step)
        specs[s.name] = {"source": s.corpus, "part": s.part, "tokens": s.tokens, "doc_tokens": s.doc_tokens,
                         "min_docs": s.min_docs, "tokenizer_from": root}
    return Step(SLICE_STEP, add_eval_slices, {"slices": specs}, after=tuple(dict.fromkeys(roots)),
                code=("featstore.text.slices", "featstore.text.mixtures", "featstore.text.sources"), outputs_exist=slices_exist(list(specs)))


def sae_steps(exp: Experiment, sae: SAE, ingest_batch: int) -> list[Step]:
    primary = sae.entry == MAIN_SAE
    model = exp.models[sae.model]
    if sae.path is not None:
        train = Step(f"sae-{sae.label}", import_sae, {"model": sae.model, "sae": sae.id, "path": sae.path,
                     "primary": primary}, after=(model.step,), code=("featstore.saes.catalog",), outputs_exist=sae_exists(sae.id))
    elif sae.init_from is not None:  # lineage-initialised: from the parent's trained main SAE, in a pass of its own
        params = {"model": sae.model, "sae": sae.id, "settings": sae.settings, "init_from": sae.init_from}
        train = Step(f"sae-{sae.label}", train_model_sae, params, after=(model.step, f"sae-{model.parents[0]}"),
                     code=SAE_CODE, outputs_exist=sae_exists(sae.id))
    else:
        # another SAE of the model reads the main one's text in its batch order (data_seed): a seed replica, or with
        # its own `init` a control of initialisation (matched along the lineage, not with the main SAE)
        params = {"model": sae.model, "sae": sae.id, "settings": sae.settings} | (
            {} if primary else {"primary": False} if sae.init else {"seed_of": f"{sae.model}-sae"})
        train = Step(f"sae-{sae.label}", train_model_sae, params, after=(model.step if primary else f"sae-{sae.model}",),
                     code=SAE_CODE, outputs_exist=sae_exists(sae.id), group=f"train-saes-{sae.model}", together=train_model_saes)
    slices = sae_slices(exp, sae)
    ingest = Step(f"ingest-{sae.label}", ingest_model,
                  {"model": sae.model, "sae": sae.id, "slices": slices, "batch_size": ingest_batch},
                  after=(train.name, SLICE_STEP), code=INGEST_CODE, outputs_exist=partitions_exist(sae.id, slices))
    return [train, ingest]


def sae_slices(exp: Experiment, sae: SAE) -> list[str]:
    """The slices an SAE is ingested on: its `slices`, else every slice of its model (main SAE) or the
    model's home slice (a seed replica, whose only use is the noise floor there, or a lineage-initialised SAE).
    A control of initialisation is ingested where the main SAE is, to be matched along the lineage there."""
    if sae.slices:
        return list(sae.slices)
    if sae.entry == MAIN_SAE or sae.init in INITS:
        return [s.name for s in exp.slices.values() if sae.model in s.models]
    return [home_slice(exp, exp.models[sae.model])]


def correlate_step(exp: Experiment, name: str, a: SAE, b: SAE) -> Step:
    analyses = exp.analyses
    slices = [s for s in sae_slices(exp, a) if s in sae_slices(exp, b)]
    pair = {"parent_sae": a.id, "child_sae": b.id}
    stats = list(analyses.stats)
    return Step(name, correlate_edge, {**pair, "slices": slices, "r_floor": analyses.r_floor, "stats": stats},
                after=(f"ingest-{a.label}", f"ingest-{b.label}"), code=CORRELATE_CODE,
                sql=CORRELATE_SQL, queries=("correlation",), outputs_exist=correlations_exist(a.id, b.id, slices, stats))


def crosscoder_step(exp: Experiment, entry: CrosscoderEntry) -> Step:
    params = {"crosscoder": entry.name, "parent": entry.parent, "child": entry.child, "settings": entry.settings,
              "source": entry.source, "slices": list(entry.slices)}
    after = (exp.models[entry.parent].step, exp.models[entry.child].step, SLICE_STEP)
    exists = [sae_exists(entry.name), partitions_exist(entry.name, list(entry.slices))]
    return Step(f"crosscoder-{entry.name}", train_crosscoder, params, after=after, code=CROSSCODER_CODE,
                queries=("crosscoders",), outputs_exist=lambda ctx: all(check(ctx) for check in exists))


def match_step(exp: Experiment, label: str, a: SAE, b: SAE) -> Step:
    """The evidence of a compared pair; with the crosscoder method after the crosscoders of its two models."""
    correlated = [s for s in sae_slices(exp, a) if s in sae_slices(exp, b)]
    crosscoders = [c for c in exp.crosscoders if {c.parent, c.child} == {a.model, b.model}]
    params = {"sae_a": a.id, "sae_b": b.id, "slices": correlated}
    if crosscoders:
        from featstore.matching import COMPUTED

        params["methods"] = list(COMPUTED)
    return Step(f"match-{label}", match_saes, params, after=(f"correlate-{label}", *(f"crosscoder-{c.name}" for c in crosscoders)),
                code=MATCH_CODE, sql=MATCH_SQL, queries=("matching",), outputs_exist=evidence_exists(a.id, b.id, params.get("methods")))


def causal_step(exp: Experiment, label: str, a: SAE, b: SAE) -> Step:
    """The causal check of an edge: on [analyses.causal] slices both SAEs are correlated on, else the child's home."""
    correlated = [s for s in sae_slices(exp, a) if s in sae_slices(exp, b)]
    home = home_slice(exp, exp.models[b.model])
    slices = [s for s in exp.analyses.causal_slices if s in correlated] or [home if home in correlated else correlated[0]]
    params = {"sae_a": a.id, "sae_b": b.id, "slices": slices, "settings": exp.analyses.causal}
    return Step(f"causal-{label}", check_causally, params, after=(f"correlate-{label}",), code=CAUSAL_CODE,
                sql=MATCH_SQL, queries=("matching",), outputs_exist=causal_runs_exist(a.id, b.id, slices))


def initialisation_pairs(exp: Experiment, edges: list[tuple[str, str]], main: dict[str, SAE]) -> list[tuple[str, SAE, SAE]]:
    """The controls of initialisation along each edge, labelled `<parent>-<child>-<entry>`: an entry with its own
    `init` (independent or shared) against the parent's entry of the same name, a lineage-initialised SAE against
    the parent's main SAE it started from."""
    controls = {(s.model, s.entry): s for s in exp.saes if s.init in INITS}
    out = []
    for p, c in edges:
        for sae in (s for s in exp.saes if s.model == c and s.init):
            start = main[p] if sae.init_from == main[p].id else controls.get((p, sae.entry))
            if start is not None:
                out.append((f"{p}-{c}-{sae.entry}", start, sae))
    return out


def home_slice(exp: Experiment, model: Model) -> str:
    """Where a model's features are explained: its `home`, else the slice of its own training corpus,
    else its first parent's home, else the first slice it is ingested on."""
    if model.home is not None:
        return model.home
    own = [s.name for s in exp.slices.values() if s.corpus == model.corpus and model.name in s.models]
    if own:
        return own[0]
    if model.parents:
        return home_slice(exp, exp.models[model.parents[0]])
    return next(s.name for s in exp.slices.values() if model.name in s.models)


def build_steps(exp: Experiment) -> list[Step]:
    """The experiment in dependency order; each step's params are the inputs its hash covers."""
    analyses = exp.analyses
    steps = [model_step(exp, m) for m in exp.models.values()]
    steps += [sweep_step(exp, s) for s in analyses.sweeps]
    steps.append(slices_step(exp))
    main = {s.model: s for s in exp.saes if s.entry == MAIN_SAE}
    others = [s for s in exp.saes if s.entry != MAIN_SAE]
    for sae in [*main.values(), *others]:
        steps += sae_steps(exp, sae, analyses.ingest_batch)
    edges = [(p, c) for p, c in analyses.edges if p in main and c in main]
    lineage = [(f"{p}-{c}", main[p], main[c]) for p, c in edges] + initialisation_pairs(exp, edges, main)
    pairs = lineage + [(s.label, main[s.model], s) for s in others if s.init is None]  # and each seed replica
    steps += [correlate_step(exp, f"correlate-{label}", a, b) for label, a, b in pairs]
    steps += [crosscoder_step(exp, c) for c in exp.crosscoders]
    steps += [match_step(exp, label, a, b) for label, a, b in pairs]
    if analyses.causal is not None:
        steps += [causal_step(exp, label, a, b) for label, a, b in lineage]
    for model, sae in main.items():
        touching = tuple(f"correlate-{p}-{c}" for p, c in edges if model in (p, c))
        steps.append(Step(f"explain-{model}", explain_sae,
                          {"sae": sae.id, "corpus": home_slice(exp, exp.models[model]), "top": analyses.explain_top,
                           "sample": analyses.explain_sample, "seed": exp.seed},
                          after=(f"ingest-{model}", *touching), code=EXPLAIN_CODE, sql=EXPLAIN_SQL,
                          queries=("explanations", "scores", "pipeline"), outputs_exist=scores_exist(sae.id)))
    steps.append(Step("report", write_report, {}, after=tuple(s.name for s in steps), code=("featstore.report.build", "featstore.report.figures", "featstore.report.markup"),
                      sql=("*",), outputs_exist=report_exists))
    return steps


def run_pipeline(
    wh: Warehouse,
    experiment: Experiment | None = None,
    *,
    force: Iterable[str] = (),
    device: str | None = None,
    prune: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) an experiment (default: the built-in tiny one); returns the step records and the
    summary tables. `prune` first removes what steps no longer in the experiment made."""
    from featstore.models.hf import resolve_device

    experiment = experiment or load_experiment()
    steps = build_steps(experiment)
    ctx = RunContext(wh, experiment, str(resolve_device(device)))
    start = time.perf_counter()
    if prune:
        for line in prune_removed(wh, steps):
            log(line)
    records = run_steps(ctx, steps, force=force, log=log)
    return {"steps": records, "seconds": round(time.perf_counter() - start, 2), "summary": run_summary(wh)}


def plan(wh: Warehouse, experiment: Experiment, *, force: Iterable[str] = ()) -> list[dict]:
    """Every step with whether a run would execute it and why, without running anything (nor writing:
    a warehouse that does not exist yet stays that way)."""
    steps = build_steps(experiment)
    _check_graph(steps)
    forced = downstream(steps, force)
    recorded = wh.steps.recorded() if wh.exists() else {}
    ctx = RunContext(wh, experiment, "cpu")
    hashes: dict[str, str] = {}
    rows = []
    for step in steps:
        digest = hashes[step.name] = input_hash(step, hashes)
        old = recorded.get(step.name)
        reason = _why_run(step, ctx, old, digest, forced) if wh.exists() else "new"
        rows.append({"step": step.name, "runs": reason is not None, "reason": reason or "unchanged",
                     "after": list(step.after)})
    removed = sorted(set(recorded) - {s.name for s in steps})
    rows += [{"step": name, "runs": False, "reason": "removed from the experiment (kept until --prune)", "after": []}
             for name in removed]
    return rows


def prune_removed(wh: Warehouse, steps: Sequence[Step]) -> list[str]:
    """Delete what recorded steps that the experiment no longer has made (models, SAEs, correlations,
    sweeps, slices), and their records; returns one line per step pruned."""
    if not wh.exists():
        return []
    keep = {s.name for s in steps}
    lines = []
    for row in wh.steps.rows_where(select="step, params"):
        if row["step"] in keep:
            continue
        removed = _prune_outputs(wh, json.loads(row["params"] or "{}"), steps)
        with wh.transaction() as con:
            wh.steps.delete_where("step = ?", [row["step"]], con)
        lines.append(f"pruned {row['step']}" + (f": {removed}" if removed else ""))
    return lines


def _prune_outputs(wh: Warehouse, params: dict, steps: Sequence[Step]) -> str:
    """What one removed step made, told apart by its recorded parameters."""
    if "parent_sae" in params:
        with wh.transaction() as con:
            run_query(con, "pipeline/forget_correlations", sae_a=params["parent_sae"], sae_b=params["child_sae"])
        return f"correlations of {params['parent_sae']} x {params['child_sae']}"
    if "sae_a" in params and "settings" in params:
        with wh.transaction() as con:
            for corpus in params["slices"]:
                wh.matches.drop_run(con, {"sae_a": params["sae_a"], "sae_b": params["sae_b"], "corpus": corpus, "method": "causal"})
        return f"causal checks of {params['sae_a']} x {params['sae_b']}"
    if "crosscoder" in params:
        wh.saes.drop(params["crosscoder"])
        return f"crosscoder {params['crosscoder']}"
    if "sae" in params and ("settings" in params or "path" in params):
        wh.saes.drop(params["sae"])
        return f"SAE {params['sae']}"
    if isinstance(params.get("slices"), dict):
        kept = {name for s in steps if s.name == SLICE_STEP for name in s.params["slices"]}
        gone = [name for name in params["slices"] if name not in kept]
        for name in gone:
            wh.corpora.drop(name)
        return f"slices {', '.join(gone)}" if gone else ""
    if "steps" in params and "models" in params:
        with wh.transaction() as con:
            wh.merge_sweeps.delete_where("model_a = ? AND model_b = ? AND method = ?", [*params["models"], params["method"]], con)
        return f"merge sweep of {' and '.join(params['models'])}"
    if "name" in params and "sae" not in params:
        forget_model(wh, params["name"])
        return f"model {params['name']}"
    return ""


SUMMARY_VIEWS = ("run_models", "run_saes", "run_persistence", "run_scores", "run_steps")


def run_summary(wh: Warehouse) -> dict:
    """The tables printed at the end of a run: models, SAEs, persistence per edge, scores, step times."""
    return {name: wh.query(f"SELECT * FROM {name}") for name in SUMMARY_VIEWS}
