"""The main job step by step: `featstore run` on the built-in tiny experiment (what `make run` runs),
timed by its own `run_steps`, beside a finished run of an earlier version.

Runs the experiment into a fresh warehouse (--warehouse keeps it; --finished reads one that ran), then
prints the seconds of each kind of step (models, SAEs, ingest, correlate, match, explain, report) and the
time from the first step's start to the last one's finish; with --baseline DIR, the same from a finished
warehouse of an earlier version (its `pipeline_steps`) and the ratio. The record also holds every step's
seconds. A step that ran with others of its group (a model's SAEs in one pass) records an equal share of
their time, so compare the kinds, not single SAE steps. The target of the main job: 600 s on two quiet
cores, install excluded.

    python benchmarks/main_job.py --baseline OLD_WAREHOUSE   # about ten minutes on two quiet cores
    python benchmarks/main_job.py --smoke                    # a micro model family: about a minute
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record

TARGET_S = 600
KINDS = {"train-": "models", "finetune-": "models", "merge": "models", "sweep-": "models", "eval-slices": "models",
         "sae-": "SAEs", "ingest-": "ingest", "correlate-": "correlate", "match-": "match", "explain-": "explain",
         "report": "report"}
# micro sizes of the models and SAEs of any experiment on the tiny family's shape
MICRO = ["family.hidden_size=32", "family.intermediate_size=64", "family.num_attention_heads=2",
         "family.num_key_value_heads=1", "family.block_size=32", "family.eval_tokens=256", "tokenizer.vocab_size=512",
         "family.base.max_tokens=4096", "family.finetune.max_tokens=1024", "saes.default.expansion=2",
         "saes.default.tokens=3072", "saes.default.batch_blocks=8", "saes.default.eval_tokens=480",
         "saes.default.resample_every=100"]
# micro sizes of every stage, on the shipped experiment (smoke: the whole job in about a minute)
SMOKE = [*MICRO, 'corpora.english="generated:childes?docs=80"', 'corpora.lua="generated:lua?docs=60"',
         'corpora.tinystories="generated:stories?docs=80"', "slices.eval-python.tokens=600",
         "slices.eval-lua.tokens=600", "slices.eval-stories.tokens=600", "analyses.explain.top=4",
         "analyses.explain.sample=4", "analyses.sweeps.merge-sweep.steps=3"]


def kind(step: str) -> str:
    return next((k for prefix, k in KINDS.items() if step.startswith(prefix)), "other")


def read_run(db: Path) -> tuple[dict[str, float], float]:
    """(seconds of each finished step, seconds from the first step's start to the last one's finish) of a
    warehouse, as `pipeline_steps` recorded them."""
    with duckdb.connect(str(db), read_only=True) as con:
        steps = dict(con.execute("SELECT step, seconds FROM pipeline_steps WHERE status = 'done'").fetchall())
        span = con.execute("SELECT epoch(max(finished_at) - min(started_at)) FROM pipeline_steps").fetchone()[0]
    return steps, span


def by_kind(seconds: dict[str, float]) -> dict[str, float]:
    out = dict.fromkeys([*dict.fromkeys(KINDS.values()), "other"], 0.0)
    for step, s in seconds.items():
        out[kind(step)] += s
    return out


def run_job(folder: Path, overrides: list[str], experiment: Path | None = None) -> float:
    """Wall seconds of `featstore run` (`experiment`, default the built-in one, `overrides` applied) into `folder`."""
    from featstore.pipeline.experiment import load_experiment
    from featstore.pipeline.steps import run_pipeline
    from featstore.warehouse import Warehouse

    return run_pipeline(Warehouse(folder), load_experiment(experiment, overrides), log=print)["seconds"]


def job_folder(warehouse: Path | None, finished: bool, prefix: str) -> Path:
    """The warehouse folder of a run: --warehouse or a fresh temporary one; with --finished it must hold a
    warehouse, without it it must not."""
    folder = warehouse or Path(tempfile.mkdtemp(prefix=prefix)) / "warehouse"
    if (folder / "featstore.duckdb").exists() != finished:
        raise SystemExit(f"{folder} {'holds no' if finished else 'already holds a'} warehouse;"
                         f" give {'a finished run' if finished else 'an empty --warehouse'}")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, default=None, help="folder of the run's warehouse (default: a temporary one)")
    parser.add_argument("--baseline", type=Path, default=None, help="a finished warehouse of an earlier version to compare with")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="experiment override, as `featstore run --set`")
    parser.add_argument("--finished", action="store_true", help="read the finished run in --warehouse instead of running"
                        " (its steps' seconds; no wall time)")
    args = parse_args(parser, smoke={})
    overrides = (SMOKE if args.smoke else []) + args.overrides
    folder = job_folder(args.warehouse, args.finished, "featstore-main-job-")
    wall = None if args.finished else run_job(folder, overrides)
    steps, span = read_run(folder / "featstore.duckdb")
    old, old_span = read_run(args.baseline / "featstore.duckdb") if args.baseline else ({}, None)
    now, before = by_kind(steps), by_kind(old) if old else {}
    figures = {"span_s": span, "steps_s": sum(steps.values()), **{f"{k}_s": v for k, v in now.items()},
               **{f"step_{name}_s": v for name, v in steps.items()}}
    ratios = {"span_over_target": span / TARGET_S}
    if wall is not None:
        figures["wall_s"], ratios["wall_over_target"] = wall, wall / TARGET_S
    if before:
        figures |= {"baseline_span_s": old_span, "baseline_steps_s": sum(old.values()),
                    **{f"baseline_{k}_s": v for k, v in before.items()},
                    **{f"baseline_step_{name}_s": v for name, v in old.items()}}
        ratios |= {"span_speedup": old_span / span,
                   **{f"{k}_speedup": before[k] / now[k] for k in now if now[k] > 0 and before.get(k)}}
    print(f"{'steps':>10} {'seconds':>9}" + (f" {'baseline':>9} {'speedup':>8}" if before else ""))
    for k, s in now.items():
        print(f"{k:>10} {s:9.1f}" + (f" {before.get(k, 0):9.1f} {ratios.get(f'{k}_speedup', float('nan')):8.2f}" if before else ""))
    print(f"{'all':>10} {sum(now.values()):9.1f}" + (f" {sum(before.values()):9.1f}" if before else ""))
    print(f"first start to last finish {span:.1f} s ({span / TARGET_S:.2f} x the {TARGET_S} s target)"
          + (f"; baseline {old_span:.1f} s, {ratios['span_speedup']:.2f}x" if before else ""))
    write_record("main_job", figures, ratios, {**settings_of(args, "overrides"), "overrides": overrides}, args.out)


if __name__ == "__main__":
    main()
