"""benchmarks/gpu/paper.sh --rehearse: the GPU run's every stage at micro sizes on the CPU, so that a run
on a GPU never fails on a typo, a missing wheel or a path (docs/gpu.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu" / "paper.sh"
OUTPUTS = ["correlate_gpu_256.json", "correlate_gpu_512.json", "paper.log", "paper_gpu.json", "report.html", "summary.md"]


def paper_sh(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def planned_steps() -> int:
    from featstore.pipeline.experiment import experiments_dir, load_experiment
    from featstore.pipeline.steps import build_steps

    return len(build_steps(load_experiment(experiments_dir() / "paper.toml")))


def test_the_rehearsal_runs_every_stage_into_one_folder_of_at_most_8_files(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    done = paper_sh("--rehearse", "--out", str(out), "--work", str(work))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS

    record = json.loads((out / "paper_gpu.json").read_text())
    figures, tables = record["figures"], record["tables"]
    assert record["settings"]["rehearse"] is True and record["settings"]["device"] == "cpu"
    assert record["command"].startswith("python benchmarks/gpu/paper.py collect")
    assert figures["steps_finished"] == figures["steps_planned"] == planned_steps()
    for kind in ("train", "finetune", "sae", "ingest", "correlate"):
        assert figures[f"{kind}_tokens_per_second"] > 0, kind
    assert math.isfinite(record["ratios"]["full_budget_estimate_over_8_minutes"])
    models = {m["model"]: m for m in tables["models"]}
    assert set(models) == {"base", "lua", "tinystories", "luastories"}
    assert models["lua"]["paper_val_loss"] == 2.4518 and models["lua"]["val_loss"] > 0 and 0 <= models["lua"]["val_accuracy"] <= 1
    assert models["base"]["home_domains"] == ["python", "english"]
    assert len(tables["saes"]) == 4 and all(s["fvu"] is not None for s in tables["saes"])
    assert tables["persistence"] and all(p["parent_floor"] is not None for p in tables["persistence"])
    assert tables["top_persisting"] and all(-1 <= f["r"] <= 1 for f in tables["top_persisting"])

    for features in (256, 512):
        bench = json.loads((out / f"correlate_gpu_{features}.json").read_text())
        assert bench["settings"]["features"] == features
        assert bench["ratios"]["numba_over_torch_1t_wall"] > 0
        assert bench["figures"]["torch_1t_planted_found"] == bench["figures"]["numba_1t_planted_found"] == 16

    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and ".png'" not in report and '.png"' not in report
    summary = (out / "summary.md").read_text()
    assert "## run_models" in summary and "## top_persisting" in summary
    log = (out / "paper.log").read_text()
    assert all(f"== {stage}" in log for stage in ("smoke", "cuda-paths", "run", "correlate", "collect"))


def test_an_unknown_option_is_one_error_line(tmp_path):
    done = paper_sh("--rehaerse", timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: unknown option --rehaerse") and len(done.stderr.strip().splitlines()) == 1


def test_the_run_stage_refuses_a_used_warehouse(tmp_path):
    (tmp_path / "warehouse").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu" / "paper.py"), "run", "--rehearse", "--work",
                           str(tmp_path), "--out", str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "exists; give --work a fresh folder" in done.stderr


def _paper_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_paper", ROOT / "benchmarks" / "gpu" / "paper.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gpu_settings_are_a_valid_experiment_at_the_scaled_budgets(tmp_path, monkeypatch):
    """The settings only a GPU run uses (the rehearsal has its own) are checked here, where a typo is cheap."""
    import argparse

    from featstore.pipeline.experiment import experiments_dir, load_experiment

    paper = _paper_module()
    tokenizer = tmp_path / "tokenizer.model.v1"  # stands for the file the wheelhouse carries
    tokenizer.write_bytes(b"sentencepiece")
    monkeypatch.setattr(paper, "MISTRAL_FILE", tokenizer)
    monkeypatch.setattr(paper, "mistral_installed", lambda: False)
    args = argparse.Namespace(rehearse=False, scale=0.125)
    experiment = load_experiment(experiments_dir() / "paper.toml", paper.overrides(args))
    assert experiment.tokenizer == str(tokenizer)
    assert experiment.family_overrides["base"]["max_tokens"] == 3_000_000
    assert experiment.family_overrides["finetune"] == {"max_tokens": 1_500_000, "warmup_steps": 62}
    assert {sae.settings["tokens"] for sae in experiment.saes} == {1_500_000}
