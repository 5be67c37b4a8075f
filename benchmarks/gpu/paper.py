"""The paper's experiment on one GPU as one prepared job; `paper.sh` runs its stages under time limits.

    python benchmarks/gpu/paper.py smoke   [--rehearse]                  # the set-up checks, in seconds
    python benchmarks/gpu/paper.py run     --work DIR [--scale S | --rehearse]
    python benchmarks/gpu/paper.py correlate --out DIR [--rehearse]
    python benchmarks/gpu/paper.py collect --work DIR --out DIR [--rehearse]

`run` is `featstore run experiments/paper.toml` into a fresh warehouse with the training budgets (base,
fine-tunes, SAEs) multiplied by --scale; everything else (corpora, slices, explanations, sweep) keeps
its full size. `collect` reads that warehouse, whatever finished, into one benchmark record (each step's
seconds and throughput, the full budgets' time that follows, the paper-size results beside the paper's),
the summary tables as Markdown and the report as one self-contained HTML file. `--rehearse` runs the same
stages at micro sizes on the CPU, with a trained BPE tokenizer where mistral-common is not installed.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from record import write_record

EXPERIMENT = REPO / "experiments" / "paper.toml"
RECORD = "paper_gpu"
# experiments/paper.toml's training budgets at full size (the paper preset's, docs/experiments.md)
FULL_BUDGETS = {"family.base.max_tokens": 24_000_000, "family.finetune.max_tokens": 12_000_000,
                "saes.default.tokens": 12_000_000}
FULL_FINETUNE_WARMUP = 500  # steps; scaled with the fine-tune budget so the schedule keeps its shape
DEFAULT_SCALE = 0.125
# every stage at micro sizes: a 32-wide model, 128-feature SAEs, a few thousand tokens per stage, 400-token slices
REHEARSAL = [
    "family.hidden_size=32", "family.intermediate_size=64", "family.num_attention_heads=2",
    "family.num_key_value_heads=1", "family.block_size=32", "family.eval_tokens=256",
    "family.base.max_tokens=4096", "family.base.batch_size=8", "family.base.epochs=1", "family.base.warmup_steps=2",
    "family.finetune.max_tokens=1024", "family.finetune.batch_size=8", "family.finetune.warmup_steps=1",
    "corpora.english='generated:childes?docs=80'", "corpora.lua='generated:lua?docs=60'",
    "corpora.tinystories='generated:stories?docs=80'",
    "saes.default.expansion=2", "saes.default.tokens=3072", "saes.default.batch_blocks=8", "saes.default.eval_tokens=480",
    "saes.default.resample_every=100",
    "slices.eval-python.tokens=400", "slices.eval-lua.tokens=400", "slices.eval-stories.tokens=400",
    "analyses.ingest_batch=8", "analyses.explain.top=4",
    "analyses.sweeps.merge-sweep.steps=3", "analyses.sweeps.merge-sweep.eval_tokens=128",
]
BPE_STAND_IN = ["tokenizer.source='bpe'", "tokenizer.vocab_size=1024", "tokenizer.sample_chars=200000"]
# The paper's evaluation loss / next-token accuracy (docs/experiments.md): base on its own mixture
PAPER_METRICS = {"base": (3.1027, 0.4190), "lua": (2.4518, 0.4941), "tinystories": (2.0442, 0.5196)}
HOME_DOMAINS = {"base": ("python", "english"), "lua": ("lua",), "tinystories": ("tinystories",),
                "luastories": ("lua", "tinystories")}
OPTIONAL_MODULES = ("datasets", "flask")  # hub corpora and `featstore serve`: not on this run's path
CORRELATE_GPU = {"tokens": 1_000_000, "features": (16_384, 65_536)}
CORRELATE_REHEARSAL = {"features": (256, 512)}


# -- stages ------------------------------------------------------------------------------------------


def smoke(args: argparse.Namespace) -> None:
    """Fail within seconds on what would break the run later: imports, the device, the tokenizer."""
    import torch

    for module in ("featstore.pipeline.steps", "featstore.correlation.engines.numba", "duckdb", "cli"):
        __import__(module)
        print(f"import {module}: ok")
    for module in OPTIONAL_MODULES:  # featstore needs them, this run does not: a failure is only reported
        try:
            __import__(module)
            print(f"import {module}: ok")
        except Exception as error:  # noqa: BLE001 - any import failure is reported the same way
            print(f"import {module}: unavailable ({type(error).__name__}: {error}); the run does not need it")
    device = device_of(args)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("error: torch sees no CUDA device; run on a GPU machine or pass --rehearse")
        x = torch.randn(1024, 1024, device=device)
        torch.cuda.synchronize()
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB; matmul {float((x @ x).norm()):.1f}")
    print(f"tokenizer: {tokenizer_note(args.rehearse)}")
    print(f"experiment: {len(overrides(args))} settings over {EXPERIMENT.relative_to(REPO)}; plan:")
    plan = featstore("--warehouse", str(args.work / "warehouse"), "run", str(EXPERIMENT), "--plan", *set_flags(args))
    if plan.returncode != 0:
        raise SystemExit(f"error: the plan failed: {plan.stderr.strip() or plan.stdout.strip()}")
    print(plan.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> None:
    """`featstore run experiments/paper.toml` into a fresh warehouse at the scaled budgets."""
    warehouse = args.work / "warehouse"
    if warehouse.exists():
        raise SystemExit(f"error: {warehouse} exists; give --work a fresh folder")
    print(f"scale: {'rehearsal (micro sizes)' if args.rehearse else args.scale} of the training budgets; "
          f"device {device_of(args)}; tokenizer {tokenizer_note(args.rehearse)}")
    for key in overrides(args):
        print(f"  --set {key}")
    done = featstore("--warehouse", str(warehouse), "run", str(EXPERIMENT), "--device", device_of(args),
                     *set_flags(args), capture=False)
    if done.returncode != 0:
        raise SystemExit(done.returncode)


def correlate(args: argparse.Namespace) -> None:
    """The correlate benchmark: the torch engine on the device beside numba on the host's cores."""
    threads = str(1 if args.rehearse else os.cpu_count())
    for features in (CORRELATE_REHEARSAL if args.rehearse else CORRELATE_GPU)["features"]:
        size = ["--smoke"] if args.rehearse else ["--tokens", str(CORRELATE_GPU["tokens"])]
        command = [sys.executable, str(REPO / "benchmarks" / "correlate.py"), *size, "--features", str(features),
                   "--engines", "torch,numba", "--threads", threads, "--no-scipy", "--name", f"correlate_gpu_{features}",
                   "--out", str(args.out)]
        print("$ " + " ".join(command[1:]), flush=True)
        if subprocess.run(command, cwd=REPO, check=False).returncode != 0:
            raise SystemExit(f"error: the correlate benchmark failed at {features} features")


def collect(args: argparse.Namespace) -> None:
    """The record, the summary tables and the report of whatever the run finished."""
    from featstore.warehouse import Warehouse

    root = args.work / "warehouse"
    if not (root / "featstore.duckdb").exists():
        raise SystemExit(f"error: no warehouse at {root}: the run stage did not start")
    wh = Warehouse(root)
    steps = step_rates(wh, 1.0 if args.rehearse else args.scale)
    figures = {
        "steps_finished": len(steps), "steps_planned": planned_steps(args),
        "run_seconds": sum(s["seconds"] for s in steps),
        "full_budget_seconds_estimate": sum(s["full_seconds"] for s in steps),
        **rates_by_kind(steps),
    }
    ratios = {"full_budget_estimate_over_8_minutes": figures["full_budget_seconds_estimate"] / 480}
    settings = {"rehearse": args.rehearse, "scale": None if args.rehearse else args.scale, "device": device_of(args),
                "tokenizer": tokenizer_note(args.rehearse), "overrides": overrides(args)}
    tables = {"steps": steps, **paper_results(wh)}
    write_record(RECORD, figures, ratios, settings, args.out, tables=tables)
    (args.out / "summary.md").write_text(summary_markdown(wh, figures, tables))
    write_report(wh, args.out / "report.html")
    print(f"{len(steps)} of {figures['steps_planned']} steps finished in {figures['run_seconds']:.1f} s; at the full "
          f"budgets about {figures['full_budget_seconds_estimate']:.0f} s")


# -- settings ----------------------------------------------------------------------------------------


def device_of(args: argparse.Namespace) -> str:
    return "cpu" if args.rehearse else "cuda"


MISTRAL_FILE = REPO / ".whl" / "tokenizer.model.v1"  # Mistral's SentencePiece model, as wheelhouse.sh carries it


def mistral_installed() -> bool:
    return importlib.util.find_spec("mistral_common") is not None


def tokenizer_settings(rehearse: bool) -> list[str]:
    """Mistral's tokenizer: from mistral-common where installed, else the file the wheelhouse carries; a
    trained BPE stands in for it in a rehearsal without either."""
    if mistral_installed():
        return []
    if MISTRAL_FILE.is_file():
        return [f"tokenizer.source='{MISTRAL_FILE}'"]
    if rehearse:
        return BPE_STAND_IN
    raise SystemExit("error: Mistral's tokenizer is missing: build the wheelhouse (bash benchmarks/gpu/wheelhouse.sh) "
                     "or pip install 'featstore[paper]'")


def tokenizer_note(rehearse: bool) -> str:
    chosen = tokenizer_settings(rehearse)
    if chosen == BPE_STAND_IN:
        return "bpe, standing in for Mistral's (neither mistral-common nor .whl/tokenizer.model.v1 is here)"
    return "Mistral's, " + ("from mistral-common" if not chosen else f"from {MISTRAL_FILE.relative_to(REPO)}")


def overrides(args: argparse.Namespace) -> list[str]:
    """The --set values of this run: micro sizes when rehearsing, else the training budgets times --scale."""
    if args.rehearse:
        return REHEARSAL + tokenizer_settings(True)
    scaled = [f"{key}={max(1, round(full * args.scale))}" for key, full in FULL_BUDGETS.items()]
    warmup = f"family.finetune.warmup_steps={max(1, round(FULL_FINETUNE_WARMUP * args.scale))}"
    return scaled + [warmup] + tokenizer_settings(False)


def set_flags(args: argparse.Namespace) -> list[str]:
    return [flag for key in overrides(args) for flag in ("--set", key)]


def featstore(*argv: str, capture: bool = True) -> subprocess.CompletedProcess:
    """The `featstore` command line (cli.py), from this checkout or the installed wheel."""
    return subprocess.run([sys.executable, "-m", "cli", *argv], cwd=REPO, capture_output=capture, text=True,
                          check=False)


def planned_steps(args: argparse.Namespace) -> int:
    from featstore.pipeline.experiment import load_experiment
    from featstore.pipeline.steps import build_steps

    return len(build_steps(load_experiment(EXPERIMENT, overrides(args))))


# -- the record --------------------------------------------------------------------------------------

STEP_KIND = re.compile(r"^(train|finetune|merge-sweep|merge|eval-slices|sae|ingest|correlate|match|explain|report)")
SCALED_KINDS = ("train", "finetune", "sae")  # the steps whose work --scale multiplies
WORK_SQL = {  # per step kind: the units of work it did (tokens through a model or an SAE)
    "train": "SELECT (hyperparams->'preset'->'base'->>'max_tokens')::BIGINT FROM models WHERE name = ?",
    "finetune": "SELECT (hyperparams->'preset'->'finetune'->>'max_tokens')::BIGINT FROM models WHERE name = ?",
    "sae": "SELECT train_tokens FROM saes WHERE id = ?",
    "ingest": "SELECT sum(n_tokens) FROM activation_partitions WHERE sae = ?",
    "correlate": "SELECT sum(n_tokens) FROM correlation_runs WHERE sae_a = ? AND sae_b = ?",
}


def step_rates(wh, scale: float) -> list[dict]:
    """Each finished step: kind, seconds, work done and its rate, and its seconds at the full budgets."""
    rows = wh.query("SELECT step, seconds, params FROM pipeline_steps WHERE status = 'done' ORDER BY finished_at").to_pylist()
    steps = []
    for row in rows:
        kind = STEP_KIND.match(row["step"]).group(1)
        work = step_work(wh, kind, json.loads(row["params"] or "{}"))
        factor = 1 / scale if kind in SCALED_KINDS else 1.0
        steps.append({"step": row["step"], "kind": kind, "seconds": row["seconds"], "work_tokens": work,
                      "tokens_per_second": work / row["seconds"] if work and row["seconds"] else None,
                      "full_seconds": row["seconds"] * factor})
    return steps


def step_work(wh, kind: str, params: dict) -> int | None:
    keys = {"train": ("name",), "finetune": ("name",), "sae": ("sae",), "ingest": ("sae",),
            "correlate": ("parent_sae", "child_sae")}.get(kind)
    if keys is None or any(k not in params for k in keys):
        return None
    return wh.scalar(WORK_SQL[kind], [params[k] for k in keys])


def rates_by_kind(steps: list[dict]) -> dict:
    """Per step kind (base training, fine-tuning, SAE training, ingest, correlate, ...): seconds and tokens/s."""
    out = {}
    for kind in dict.fromkeys(s["kind"] for s in steps):
        mine = [s for s in steps if s["kind"] == kind]
        out[f"{kind}_seconds"] = seconds = sum(s["seconds"] for s in mine)
        work = sum(s["work_tokens"] or 0 for s in mine)
        if work and seconds:
            out[f"{kind}_tokens_per_second"] = work / seconds
    return out


def paper_results(wh) -> dict:
    """Validation loss and accuracy next to the paper's, the SAEs' quality, persistence beside the seed
    floors and the top persisting features (each where the run got that far)."""
    models = []
    for row in wh.query("SELECT name, val_loss, val_accuracy FROM run_models").to_pylist():
        loss, accuracy = (json.loads(row[k] or "{}") for k in ("val_loss", "val_accuracy"))
        home = [d for d in HOME_DOMAINS.get(row["name"], ()) if d in loss]
        paper = PAPER_METRICS.get(row["name"], (None, None))
        models.append({"model": row["name"], "home_domains": home,
                       "val_loss": sum(loss[d] for d in home) / len(home) if home else None,
                       "val_accuracy": sum(accuracy[d] for d in home) / len(home) if home else None,
                       "paper_val_loss": paper[0], "paper_val_accuracy": paper[1], "per_domain_loss": json.dumps(loss)})
    return {"models": models,
            "saes": wh.query("SELECT * FROM run_saes").to_pylist(),
            "persistence": wh.query("SELECT * FROM run_persistence").to_pylist(),
            "top_persisting": top_persisting(wh)}


TOP_PERSISTING = """
SELECT m.parent, m.child, m.corpus, m.parent_feature, m.child_feature, round(m.r::DOUBLE, 4) AS r, m.parent_firing,
       (SELECT any_value(e.explanation) FROM explanations e
        WHERE e.sae = m.parent_sae AND e.feature = m.parent_feature) AS explanation
FROM showcase_matches(n := 3) m
ORDER BY m.parent, m.child, m.corpus, m.rank
"""


def top_persisting(wh) -> list[dict]:
    if not wh.scalar("SELECT count(*) FROM correlation_runs"):
        return []
    return wh.query(TOP_PERSISTING).to_pylist()


# -- the summary tables and the report ---------------------------------------------------------------


def summary_markdown(wh, figures: dict, tables: dict) -> str:
    """The run's figures, its results beside the paper's and its summary tables (as `featstore run` prints
    them), as Markdown."""
    from featstore.pipeline.steps import run_summary

    parts = ["# The paper's experiment: run summary\n",
             (f"{figures['steps_finished']} of {figures['steps_planned']} steps finished in {figures['run_seconds']:.1f} s; "
              f"at the full training budgets about {figures['full_budget_seconds_estimate']:.0f} s.\n"),
             markdown_table([{"figure": k, "value": v} for k, v in figures.items()])]
    for name, rows in {**tables, **{k: t.to_pylist() for k, t in run_summary(wh).items()}}.items():
        parts += [f"## {name}\n", markdown_table(rows)]
    return "\n".join(parts)


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return "(none)\n"
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(markdown_cell(v) for v in row.values()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|").replace("\n", " ")


def write_report(wh, path: Path) -> None:
    """The warehouse's report as one HTML file: its figures inlined as data URIs (one file, not a folder)."""
    index = wh.root / "report" / "index.html"
    if not index.exists():
        from featstore.report.build import build_report

        build_report(wh)
    html = index.read_text()

    def inline(match: re.Match) -> str:
        image = index.parent / match.group(2)
        if not image.is_file():
            return match.group(0)
        return f"src={match.group(1)}data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()}{match.group(1)}"

    path.write_text(re.sub(r"src=(['\"])([^'\"]+\.png)\1", inline, html))


# -- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=["smoke", "run", "correlate", "collect"])
    parser.add_argument("--rehearse", action="store_true", help="micro sizes on the CPU")
    parser.add_argument("--scale", type=float, default=DEFAULT_SCALE, help="share of the full training budgets")
    parser.add_argument("--work", type=Path, default=Path("/tmp/featstore-paper"), help="the run's warehouse goes here")
    parser.add_argument("--out", type=Path, default=REPO / "gpu-out", help="records, summary and report")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    {"smoke": smoke, "run": run, "correlate": correlate, "collect": collect}[args.stage](args)
    print(f"[{args.stage}: {time.perf_counter() - started:.1f} s]")


if __name__ == "__main__":
    main()
