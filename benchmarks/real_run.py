"""The real-data experiment end to end: `featstore run experiments/real-lua.toml`, timed, with what it found.

Runs the experiment (the corpora `featstore corpus debian` builds) into a warehouse, or reads a finished
one with --finished, and records: the seconds of each kind of step and the whole run against the
target of 30 minutes on two cores; every model's validation loss and accuracy per domain, and on its
own domains against the target of 0.30; every SAE's quality; persistence per edge and slice beside the
seed floors; and what persists and what emerges by top token (status_tokens). docs/real-data.md shows
the tables of the record this writes (docs/benchmarks/real_run.json).

    python benchmarks/real_run.py --warehouse warehouse-real     # under half an hour on two quiet cores
    python benchmarks/real_run.py --warehouse warehouse-real --finished
    python benchmarks/real_run.py --smoke                        # micro sizes on generated corpora: about a minute
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from main_job import MICRO, by_kind, job_folder, read_run, run_job
from record import REPO, parse_args, settings_of, write_record

TARGET_S = 1800
TARGET_ACCURACY = 0.30
THRESHOLD = 0.8  # the paper's
OWN_DOMAINS = {"base": ("python", "english"), "lua": ("lua",), "english": ("english",), "luaenglish": ("lua", "english")}
# micro sizes (main_job's), the real family's epochs cut to one, generated corpora in place of the real ones
SMOKE = [*MICRO, "family.base.epochs=1", "family.finetune.epochs=1", "corpora.python.source=python-stdlib",
         'corpora.english.source="generated:childes?docs=80"', 'corpora.lua.source="generated:lua?docs=60"',
         *(f"slices.eval-{s}.{key}" for s in ("python", "lua", "english") for key in ("tokens=600", "min_docs=1")),
         "analyses.sweeps.sweep-lua-english.steps=3"]

QUERIES = {
    "validation": "SELECT model, domain, val_loss, val_accuracy FROM model_validation ORDER BY model, domain",
    "SAE quality": "SELECT sae, model, d_in, d_sae, train_tokens, round(fvu, 4) AS fvu, round(l0, 2) AS l0, "
                   "round(dead_fraction, 4) AS dead_fraction, round(ce_loss_recovered, 4) AS ce_loss_recovered "
                   "FROM sae_quality ORDER BY model, sae",
    "persistence": "SELECT parent, child, corpus, parent_persist, parent_disappear, round(parent_share_persisting, 4) AS "
                   "parent_share, round(parent_floor, 4) AS parent_floor, round(parent_share_vs_floor, 3) AS vs_floor, "
                   "child_persist, child_emerge, round(child_share_persisting, 4) AS child_share, "
                   "round(child_floor, 4) AS child_floor FROM persistence_summary(threshold := $t)",
    "top tokens": "SELECT parent, child, corpus, side, status, features, share_punctuation, top_tokens "
                  "FROM status_tokens(threshold := $t)",
}


def read_tables(db: Path) -> dict[str, list[dict]]:
    from featstore.warehouse import Warehouse

    wh = Warehouse(db.parent)
    with wh.connect(read_only=True) as con:
        return {title: _rows(con, sql) for title, sql in QUERIES.items()}


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict]:
    result = con.execute(sql, {"t": THRESHOLD} if "$t" in sql else None)
    names = [d[0] for d in result.description]
    return [dict(zip(names, row)) for row in result.fetchall()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", type=Path, default=REPO / "experiments" / "real-lua.toml")
    parser.add_argument("--warehouse", type=Path, default=None, help="folder of the run's warehouse (default: a temporary one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="experiment override, as `featstore run --set`")
    parser.add_argument("--finished", action="store_true", help="read the finished run in --warehouse instead of running")
    args = parse_args(parser, smoke={})
    overrides = (SMOKE if args.smoke else []) + args.overrides
    folder = job_folder(args.warehouse, args.finished, "featstore-real-run-")
    wall = None if args.finished else run_job(folder, overrides, args.experiment)
    steps, span = read_run(folder / "featstore.duckdb")
    tables = read_tables(folder / "featstore.duckdb")
    figures = {"span_s": span, **{f"{k}_s": v for k, v in by_kind(steps).items()},
               **{f"step_{name}_s": v for name, v in steps.items()}}
    ratios = {"span_over_target": span / TARGET_S}
    if wall is not None:
        figures["wall_s"], ratios["wall_over_target"] = wall, wall / TARGET_S
    for row in tables["validation"]:
        figures[f"{row['model']}_{row['domain']}_val_accuracy"] = row["val_accuracy"]
        if row["domain"] in OWN_DOMAINS.get(row["model"], ()):
            ratios[f"{row['model']}_{row['domain']}_accuracy_over_target"] = row["val_accuracy"] / TARGET_ACCURACY
    print(f"first start to last finish {span:.0f} s ({span / TARGET_S:.2f} x the {TARGET_S} s target)")
    for key, value in ratios.items():
        if key.endswith("accuracy_over_target"):
            print(f"{key.removesuffix('_accuracy_over_target'):>20}: accuracy {value * TARGET_ACCURACY:.3f} ({value:.2f} x 0.30)")
    settings = {**settings_of(args, "overrides"), "overrides": overrides, "threshold": THRESHOLD}
    write_record("real_run", figures, ratios, settings, args.out, tables=tables)


if __name__ == "__main__":
    main()
