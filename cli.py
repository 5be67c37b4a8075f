"""`featstore` command line: argument parsing and progress only; the work is in the library."""

from __future__ import annotations

import importlib
import sys
import tempfile
import traceback
from dataclasses import fields
from pathlib import Path

import click

from featstore.correlation.correlate import MIN_COFIRING
from featstore.correlation.engines import ENGINES
from featstore.correlation.statistics import statistic_names
from featstore.crosscoders.settings import CrosscoderSettings
from featstore.errors import FeatstoreError
from featstore.export.tables import FORMATS
from featstore.interpret.backends import BACKENDS
from featstore.matching.causal import CausalSettings
from featstore.models.catalog import MODEL_KINDS, RELATIONS
from featstore.models.presets import MODEL_PRESETS
from featstore.saes.presets import SAE_PRESETS, TrainSettings
from featstore.text.debian import DEFAULT_OUT as DEFAULT_REAL_CORPORA
from featstore.text.debian import ENGLISH_PACKAGES, LUA_PACKAGES
from featstore.text.mixtures import PARTS
from featstore.warehouse import Warehouse, disk_full_error, is_disk_full

ERROR_LOG = Path(tempfile.gettempdir()) / "featstore-error.log"


GLOBAL_OPTIONS = ("--warehouse",)


def hoist_global_options(args: list[str]) -> list[str]:
    """Move `--warehouse DIR` (or `--warehouse=DIR`) from anywhere before a `--` to the front, so
    `featstore export t --warehouse DIR` means `featstore --warehouse DIR export t`."""
    front, rest, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        if arg in GLOBAL_OPTIONS and i + 1 < len(args):
            front += args[i : i + 2]
            i += 2
            continue
        (front if "=" in arg and arg.split("=", 1)[0] in GLOBAL_OPTIONS else rest).append(arg)
        i += 1
    return front + rest


class FeatstoreGroup(click.Group):
    """Turns every error into one line on stderr: library errors exit 1, Ctrl-C exits 130, and an
    unexpected exception exits 1 with its traceback in ERROR_LOG (printed instead with --debug);
    global options go anywhere."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args) if ctx.parent is None else args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except FeatstoreError as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            fail("interrupted: nothing of this command was committed, earlier results are intact", 130)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            if is_disk_full(exc):
                fail(str(disk_full_error(ctx.obj.root if isinstance(ctx.obj, Warehouse) else Path.cwd())), 1)
            ERROR_LOG.write_text(traceback.format_exc())
            message = (str(exc).strip().splitlines() or [""])[0]
            fail(f"unexpected {type(exc).__name__}: {message} (traceback in {ERROR_LOG}; rerun with --debug to print it)", 1)


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(cls=FeatstoreGroup)
@click.option(
    "--warehouse",
    "warehouse_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FEATSTORE_WAREHOUSE",
    default="warehouse",
    show_default=True,
    help="Warehouse folder (or set FEATSTORE_WAREHOUSE).",
)
@click.option("--debug", is_flag=True, help="Print the traceback of an unexpected error.")
@click.pass_context
def main(ctx: click.Context, warehouse_dir: Path, debug: bool) -> None:
    """featstore: track SAE features through fine-tuning and merging, in SQL."""
    ctx.obj = Warehouse(warehouse_dir)


pass_warehouse = click.make_pass_decorator(Warehouse)


class LibraryChoice(click.Choice):
    """The names in a library registry ("module:NAME"), read only when needed: those modules import torch."""

    def __init__(self, registry: str):
        self.registry = registry
        self.case_sensitive = True

    @property
    def choices(self) -> tuple[str, ...]:
        module, name = self.registry.split(":")
        return tuple(getattr(importlib.import_module(module), name))


def stat_option(help: str):
    """`--stat`, its choices read from the statistics registry (featstore.correlation.statistics)."""
    return click.option("--stat", type=click.Choice(statistic_names()), default="all_tokens", show_default=True, help=help)


def echo_table(table) -> None:
    """Print an Arrow table as an aligned text table, drawn by DuckDB (so the CLI needs no dataframe library)."""
    import contextlib
    import io

    import duckdb

    text = io.StringIO()
    with duckdb.connect() as con, contextlib.redirect_stdout(text):
        con.from_arrow(table).show(max_width=100_000, max_rows=200, max_col_width=80)
    click.echo(text.getvalue().rstrip("\n"))


# --- warehouse: corpora, registry, import ---------------------------------------------------------


@main.group("corpus")
def corpus_group() -> None:
    """Corpus slices: tokenize a source once, store every token occurrence."""


@corpus_group.command("add")
@click.argument("name")
@click.option("--source", required=True, help="File (.txt/.jsonl/.parquet), folder, glob, python-stdlib, generated:<kind>, or hub id.")
@click.option("--tokenizer", "tokenizer_path", required=True, help="HF tokenizer folder or hub id (a model folder works).")
@click.option("--max-tokens", type=int, default=None, help="Stop at exactly this many tokens.")
@click.option("--max-docs", type=int, default=None, help="Stop after this many documents.")
@click.option("--part", type=click.Choice(PARTS), default=None,
              help="Take this split of a source spec or mixture (as the model zoo splits it).")
@click.option("--text-key", default="text", show_default=True, help="Text field of JSONL / Parquet / hub rows.")
@click.option("--doc-tokens", type=int, default=None, help="Keep at most this many tokens of each document.")
@click.option("--min-docs", type=int, default=None, help="Fail unless the corpus gets at least this many documents.")
@click.option("--replace", is_flag=True, help="Rebuild an existing corpus (drops its activations and correlations).")
@pass_warehouse
def corpus_add_command(wh: Warehouse, name: str, source: str, tokenizer_path: str, max_tokens: int | None,
                       max_docs: int | None, part: str | None, text_key: str, doc_tokens: int | None,
                       min_docs: int | None, replace: bool) -> None:
    """Tokenize SOURCE into corpus NAME."""
    from featstore.text.slices import add_corpus

    row = add_corpus(wh, name, source, tokenizer_path, max_tokens=max_tokens, max_docs=max_docs, part=part,
                     text_key=text_key, doc_tokens=doc_tokens, min_docs=min_docs, replace=replace)
    click.echo(f"corpus {row['name']}: {row['n_documents']:,} documents, {row['n_tokens']:,} tokens "
               f"(tok {row['tok_start']:,}..{row['tok_start'] + row['n_tokens'] - 1:,}), tokenizer {row['tokenizer']}")


@corpus_group.command("debian")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=str(DEFAULT_REAL_CORPORA), show_default=True,
              help="Folder to write: python/, lua/, english.jsonl, licenses/, manifest.json.")
@click.option("--debs", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of .deb files to use (missing ones are downloaded into it) [default: a temporary folder].")
@click.option("--lua-package", "lua_packages", multiple=True, help=f"Package of Lua sources (repeat) [default: {', '.join(LUA_PACKAGES)}].")
@click.option("--english-package", "english_packages", multiple=True,
              help=f"Package of English prose (repeat) [default: {', '.join(ENGLISH_PACKAGES)}].")
@click.option("--replace", is_flag=True, help="Rebuild an existing --out folder.")
def corpus_debian_command(out: Path, debs: Path | None, lua_packages: tuple[str, ...], english_packages: tuple[str, ...],
                          replace: bool) -> None:
    """Build real Python, Lua and English corpora from this Debian or Ubuntu machine's packages (no hub needed)."""
    from featstore.text.debian import build_real_corpora

    manifest = build_real_corpora(out, debs=debs, lua_packages=lua_packages or LUA_PACKAGES,
                                  english_packages=english_packages or ENGLISH_PACKAGES, replace=replace)
    for name, corpus in manifest.items():
        packages = ", ".join(p["name"] for p in corpus["packages"])
        click.echo(f"{name}: {corpus['documents']:,} documents, {corpus['bytes'] / 1e6:.1f} MB in {out.expanduser() / corpus['path']} ({packages})")
    click.echo(f"licences and versions: {out.expanduser() / 'manifest.json'}, {out.expanduser() / 'licenses'}/")


@main.command("corpora")
@pass_warehouse
def corpora_command(wh: Warehouse) -> None:
    """List corpus slices."""
    from featstore.text.slices import list_corpora

    echo_table(list_corpora(wh))


@main.group("model")
def model_group() -> None:
    """Register language models and their lineage."""


@model_group.command("add")
@click.argument("name")
@click.argument("path")
@click.option("--kind", type=click.Choice(MODEL_KINDS), required=True)
@click.option("--parent", "parents", multiple=True, help="Parent model (repeat for a merge, in merge order).")
@click.option("--relation", type=click.Choice(list(RELATIONS)), default=None,
              help="Edge type to the parents [default: from --kind].")
@click.option("--merge-method", default=None, help="e.g. slerp, linear.")
@click.option("--merge-t", type=float, default=None, help="Interpolation weight toward the second parent.")
@click.option("--train-corpus", default=None, help="Source spec the model was trained on.")
@click.option("--replace", is_flag=True, help="Re-register an existing model.")
@pass_warehouse
def model_add_command(wh: Warehouse, name: str, path: str, kind: str, parents: tuple[str, ...], relation: str | None,
                      merge_method: str | None, merge_t: float | None, train_corpus: str | None, replace: bool) -> None:
    """Register the HF model folder (or hub id) PATH as NAME."""
    from featstore.models.catalog import register_model

    row = register_model(wh, name, path, kind=kind, parents=parents, relation=relation, merge_method=merge_method,
                         merge_t=merge_t, train_corpus=train_corpus, replace=replace)
    lineage = f" <- {', '.join(row['parents'])}" if row["parents"] else ""
    click.echo(f"model {row['name']} ({row['kind']}, {row['architecture']}){lineage}")


@main.command("models")
@pass_warehouse
def models_command(wh: Warehouse) -> None:
    """List registered models."""
    from featstore.models.catalog import list_models

    echo_table(list_models(wh))


@main.command("lineage")
@pass_warehouse
def lineage_command(wh: Warehouse) -> None:
    """List lineage edges (parent -> child)."""
    from featstore.models.catalog import list_lineage

    echo_table(list_lineage(wh))


@main.group("sae")
def sae_group() -> None:
    """Register, train and evaluate sparse autoencoders."""


@sae_group.command("add")
@click.argument("sae_id")
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--model", required=True, help="The registered model whose activations the SAE reads.")
@click.option("--not-primary", is_flag=True, help="Keep the model's current primary SAE.")
@click.option("--replace", is_flag=True, help="Re-register an existing SAE (drops its activations and correlations).")
@pass_warehouse
def sae_add_command(wh: Warehouse, sae_id: str, path: str, model: str, not_primary: bool, replace: bool) -> None:
    """Register the SAE folder PATH (cfg.json + sae_weights.safetensors) as SAE_ID."""
    from featstore.saes.catalog import add_sae_folder

    row = add_sae_folder(wh, sae_id, model, path, is_primary=not not_primary, replace=replace)
    click.echo(f"SAE {row['id']} of {row['model']}: {row['hook_point']} {row['d_in']} -> {row['d_sae']} ({row['architecture']})")


@main.command("saes")
@pass_warehouse
def saes_command(wh: Warehouse) -> None:
    """List registered SAEs."""
    from featstore.saes.catalog import list_saes

    echo_table(list_saes(wh))


@main.command("import-activations")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sae", "sae_id", required=True)
@click.option("--corpus", required=True)
@pass_warehouse
def import_activations_command(wh: Warehouse, file: Path, sae_id: str, corpus: str) -> None:
    """Store sparse activations from FILE.parquet (tok, feature, act or doc_id, pos, feature, act)."""
    from featstore.activations.importer import import_activations

    done = import_activations(wh, sae_id, corpus, file)
    click.echo(f"{done['rows_written']:,} activations -> {done['path']} "
               f"({done['rows_dropped_nonpositive']:,} rows with act <= 0 dropped)")


# --- ingest ---------------------------------------------------------------------------------------


def _corpora_or_all(corpora: tuple[str, ...], all_corpora: bool) -> None:
    if all_corpora and corpora:
        raise click.UsageError("give --corpus or --all-corpora, not both")


@main.command("ingest")
@click.argument("model")
@click.option("--corpus", "corpora", multiple=True,
              help="Corpus to ingest (repeatable) [default: every slice of the model's tokenizer the SAE has no activations on].")
@click.option("--all-corpora", is_flag=True, help="Every slice of the model's tokenizer, those already ingested again.")
@click.option("--sae", "sae_id", default=None, help="[default: the model's primary SAE]")
@click.option("--layer", type=int, default=None, help="Must match the SAE's layer [default: the SAE's].")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Windows per forward pass.")
@click.option("--context", type=int, default=256, show_default=True, help="Tokens per window (within a document).")
@click.option("--device", default=None,
              help="cpu, cuda, cuda:N, or several comma-separated (one shard each, side by side) "
                   "[default, and for cuda: every visible GPU, else cpu].")
@click.option("--act-dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True,
              help="Round act to this precision before storing (about 2 bytes less per activation).")
@click.option("--shard", "shard_spec", default=None,
              help="I/N: encode the I-th of N shares of the documents (default under torchrun: RANK/WORLD_SIZE).")
@pass_warehouse
def ingest_command(wh: Warehouse, model: str, corpora, all_corpora: bool, sae_id, layer, batch_size: int, context: int,
                   device, act_dtype: str, shard_spec: str | None) -> None:
    """Run MODEL over corpora, encode its MLP activation with an SAE, store the act > 0 rows.

    Without --corpus, the slices already ingested are skipped and named; when all are, it says so and exits 0."""
    from featstore.activations.ingest import corpora_to_ingest, ingest_corpora
    from featstore.activations.shards import parse_shard

    _corpora_or_all(corpora, all_corpora)
    chosen, skipped = corpora_to_ingest(wh, model, corpora, sae_id=sae_id, every=all_corpora)
    for done in ingest_corpora(wh, model, chosen, sae_id=sae_id, layer=layer, batch_size=batch_size, context=context,
                               device=device, act_dtype=act_dtype, shard=parse_shard(shard_spec)):
        if "shard" in done:
            state = f"published -> {done['path']}" if done["published"] else f"waiting for shards {done['waiting_for']}"
            click.echo(f"{done['sae']} on {done['corpus']}, shard {done['shard']}: {done['rows']:,} rows over {done['tokens']:,} tokens, "
                       f"{done['tokens_per_s']:,.0f} tokens/s; {state}")
            continue
        click.echo(
            f"{done['sae']} on {done['corpus']}: {done['rows']:,} rows over {done['tokens']:,} tokens "
            f"({done['rows_per_token']:.1f} per token), {done['tokens_per_s']:,.0f} tokens/s, "
            f"{done['bytes_per_activation']} B per activation ({act_dtype}) -> {done['path']}"
        )
    if skipped:
        click.echo(skipped)

# --- correlate ------------------------------------------------------------------------------------


@main.command("correlate")
@click.argument("sae_a")
@click.argument("sae_b")
@click.option("--corpus", "corpora", multiple=True,
              help="Corpus both SAEs were ingested on (repeatable) [default: every one they share that has no run of "
                   "this --stat and --floor since their activations were written].")
@click.option("--all-corpora", is_flag=True, help="Every corpus both SAEs were ingested on, stored runs computed again.")
@stat_option("Correlation statistic (featstore.correlation.statistics; docs/correlation.md says what each computes).")
@click.option("--floor", "r_floor", type=float, default=0.2, show_default=True,
              help="Store every pair with r >= this (in [-1, 1]; all_tokens: > 0).")
@click.option("--min-cofiring", type=int, default=MIN_COFIRING, show_default=True,
              help="cofiring: least number of tokens both features fire on for r to count.")
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="sql: DuckDB; numba: compiled row products (CPU, fastest there); torch: blocked products (CPU/CUDA); "
                   "spark: Spark SQL; auto: torch on CUDA, else sql.")
@click.option("--threads", type=int, default=None, help="Cores to use (default: all).")
@click.option("--spark-master", default=None, help="Spark master URL for --engine spark [default: local[*]].")
@pass_warehouse
def correlate_command(wh: Warehouse, sae_a: str, sae_b: str, corpora, all_corpora: bool, stat: str, r_floor: float,
                      min_cofiring: int, engine: str, threads: int | None, spark_master: str | None) -> None:
    """Pearson r between every feature of SAE_A and of SAE_B over the same tokens; stores pairs and best matches.

    Without --corpus, the slices whose run is stored are skipped and named; when all are, it says so and exits 0."""
    from featstore.correlation.correlate import corpora_to_correlate, correlate_corpora

    _corpora_or_all(corpora, all_corpora)
    chosen, skipped = corpora_to_correlate(wh, sae_a, sae_b, corpora, stat=stat, r_floor=r_floor, min_cofiring=min_cofiring,
                                           every=all_corpora)
    for run in correlate_corpora(wh, sae_a, sae_b, chosen, stat=stat, r_floor=r_floor, min_cofiring=min_cofiring,
                                 engine=engine, threads=threads, spark_master=spark_master):
        click.echo(
            f"run {run['id']}: {sae_a} x {sae_b} on {run['corpus']} ({stat}, {run['n_tokens']:,} tokens, {run['engine']}): "
            f"{run['n_cofiring_pairs']:,} co-firing pairs, {run['n_pairs']:,} stored with r >= {r_floor}, {run['seconds']:.1f} s"
        )
    if skipped:
        click.echo(skipped)


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


@main.command("persistence")
@click.option("--threshold", type=float, default=0.8, show_default=True, help="r at which a feature counts as matched.")
@stat_option("Which correlation runs to read.")
@click.option("--method", default=None, help="Match method (SELECT name FROM match_methods) [default: --stat].")
@click.option("--policy", type=click.Choice(["best", "mutual", "one_to_one"]), default="best", show_default=True)
@pass_warehouse
def persistence_command(wh: Warehouse, threshold: float, stat: str, method: str | None, policy: str) -> None:
    """Per lineage edge: parent features persisting / disappearing, child features persisting / emerging."""
    from featstore.correlation.correlate import persistence_summary

    rows = persistence_summary(wh, threshold, stat, method, policy).to_pylist()
    if not rows:
        click.echo(f"no correlated lineage edges for {stat}; run `featstore correlate PARENT_SAE CHILD_SAE` first")
    for r in rows:
        click.echo(
            f"{r['parent']} -> {r['child']} ({r['relation']}, {r['corpus']}, r >= {threshold}): "
            f"parent {r['parent_persist']} persist / {r['parent_disappear']} disappear ({_percent(r['parent_share_persisting'])}); "
            f"child {r['child_persist']} persist / {r['child_emerge']} emerge ({_percent(r['child_share_persisting'])}); "
            f"dead {r['parent_dead']} / {r['child_dead']}; constant {r['parent_constant']} / {r['child_constant']}; seed floor {_percent(r['parent_floor'])} / {_percent(r['child_floor'])}"
        )


@main.command("match")
@click.argument("sae_a")
@click.argument("sae_b")
@click.option("--corpus", "corpora", multiple=True,
              help="Corpus for the activation methods and assignments (repeatable) [default: the weights and every corpus "
                   "both SAEs were ingested on, skipping those where each asked method has a run].")
@click.option("--all-corpora", is_flag=True, help="The weights and every corpus both SAEs were ingested on, stored runs computed again.")
@click.option("--method", "methods", multiple=True,
              help="decoder_cosine, encoder_cosine, jaccard, crosscoder [default: all, crosscoder where the models have one].")
@click.option("--top-k", type=int, default=5, show_default=True, help="Cosine partners kept per feature on each side.")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def match_command(wh: Warehouse, sae_a: str, sae_b: str, corpora, all_corpora: bool, methods, top_k: int, device) -> None:
    """Store the match evidence of two SAEs (weight cosines, co-firing Jaccard) and one-to-one assignments.

    Without --corpus, the slices whose runs are stored are skipped and named; when all are, it says so and exits 0."""
    from featstore.matching import build_evidence, slices_to_match

    _corpora_or_all(corpora, all_corpora)
    chosen, methods, skipped = slices_to_match(wh, sae_a, sae_b, corpora, methods=methods or None, top_k=top_k, every=all_corpora)
    summary = build_evidence(wh, sae_a, sae_b, chosen, methods=methods, top_k=top_k, device=device)
    for method, per_corpus in summary.items():
        for corpus, counts in per_corpus.items():
            click.echo(f"{method} ({corpus}): " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if skipped:
        click.echo(skipped)


# --- model zoo: train, finetune, merge, merge-sweep -----------------------------------------------


def _zoo_options(command):
    """Options shared by `train` and `finetune`."""
    for option in reversed([
        click.option("--corpus", default=None, help="Corpus spec, e.g. python-stdlib=0.5+generated:childes=0.5 [default: the preset's]."),
        click.option("--max-tokens", type=int, default=None, help="Training tokens over all epochs [default: the preset's]."),
        click.option("--epochs", type=int, default=None, help="Passes over the data [default: the preset's]."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default=None, help="cpu, cuda, cuda:N [default: cuda when available]."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                     help="Model folder [default: <warehouse>/models/NAME]."),
        click.option("--replace", is_flag=True, help="Retrain and re-register an existing model."),
    ]):
        command = option(command)
    return command


def _echo_rows(rows: list[dict]) -> None:
    import pyarrow as pa

    echo_table(pa.Table.from_pylist(rows))


def _echo_validation(row: dict) -> None:
    metrics = row["metrics"]
    train = metrics.get("train", {})
    if train:
        click.echo(f"model {row['name']}: {train['tokens']:,} tokens in {train['seconds']:.1f}s "
                   f"({train['tokens_per_s']:,} tok/s on {train['device']}), final train loss {train['final_loss']}")
    rows = [{"domain": d, "val_loss": loss, "val_accuracy": metrics["val_accuracy"][d]}
            for d, loss in metrics.get("val_loss", {}).items()]
    if rows:
        _echo_rows(rows)
    seen = (row.get("hyperparams") or {}).get("tokenizer_corpora")
    if seen:
        click.echo(f"tokenizer: BPE trained on {', '.join(seen)}")
    click.echo(f"saved to {row['path']}")


@main.command("train")
@click.argument("name", default="base")
@click.option("--preset", default="tiny", show_default=True, help=f"Model family preset: {' or '.join(MODEL_PRESETS)}.")
@click.option("--tokenizer", default=None,
              help="bpe (train one), mistral, a SentencePiece model file, or an HF tokenizer folder / hub id [default: the preset's].")
@_zoo_options
@pass_warehouse
def train_command(wh: Warehouse, name: str, preset: str, tokenizer, corpus, max_tokens, epochs, seed, device, out_dir,
                  replace: bool) -> None:
    """Train base model NAME from scratch (Mistral architecture) and register it.

    With --corpus, a trained tokenizer sees that corpus only and the model is measured on its validation part."""
    from featstore.models.lm import preset_for_corpus, train_base

    if corpus:
        preset = preset_for_corpus(wh, name, corpus, preset=preset)
    row = train_base(wh, name, preset=preset, corpus=corpus, tokenizer=tokenizer, max_tokens=max_tokens,
                     epochs=epochs, seed=seed, device=device, out_dir=out_dir, replace=replace)
    _echo_validation(row)


@main.command("finetune")
@click.argument("name")
@click.option("--from", "parent", required=True, help="The registered model to start from.")
@click.option("--preset", default=None, help="Preset for the schedule and domains [default: the parent's].")
@click.option("--lr", type=float, default=None, help="Peak learning rate [default: the preset's].")
@_zoo_options
@pass_warehouse
def finetune_command(wh: Warehouse, name: str, parent: str, preset, lr, corpus, max_tokens, epochs, seed, device,
                     out_dir, replace: bool) -> None:
    """Fine-tune PARENT into NAME (default corpus: the preset's corpus called NAME, e.g. lua, tinystories).

    With --corpus, the model is measured on that corpus's validation part beside the parent's domains."""
    from featstore.models.lm import (
        compare_validation,
        finetune,
        finetune_findings,
        preset_for_corpus,
    )

    if corpus:
        preset = preset_for_corpus(wh, name, corpus, preset=preset, parent=parent)
    row = finetune(wh, name, parent=parent, corpus=corpus, preset=preset, max_tokens=max_tokens, epochs=epochs,
                   lr=lr, seed=seed, device=device, out_dir=out_dir, replace=replace)
    _echo_validation({**row, "metrics": {"train": row["metrics"].get("train", {})}})
    _echo_rows(compare_validation(wh, name, parent))
    for line in finetune_findings(wh, name, parent):
        click.echo(line)


@main.command("merge")
@click.argument("model_a", required=False)
@click.argument("model_b", required=False)
@click.option("--name", required=True, help="Name of the merged model.")
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A mergekit YAML (slerp or linear, t lists with filters) instead of MODEL_A MODEL_B --method --t.")
@click.option("--method", type=LibraryChoice("featstore.models.merge:METHODS"), default="slerp", show_default=True)
@click.option("--t", "t", type=float, default=0.5, show_default=True, help="Weight toward MODEL_B, in [0, 1].")
@click.option("--device", default=None, help="Device for evaluating the merge [default: cuda when available].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Model folder [default: <warehouse>/models/NAME].")
@click.option("--replace", is_flag=True, help="Re-create and re-register an existing model.")
@pass_warehouse
def merge_command(wh: Warehouse, model_a, model_b, name: str, config, method: str, t: float, device, out_dir,
                  replace: bool) -> None:
    """Merge MODEL_A and MODEL_B per tensor (mergekit semantics) into NAME; lineage gets both parents.

    The folder gets the mergekit_config.yml that reproduces the merge with mergekit."""
    from featstore.models.merge import merge_from_config, merge_models

    options = dict(name=name, device=device, out_dir=out_dir, replace=replace)
    if config and (model_a or model_b):
        raise FeatstoreError("give MODEL_A MODEL_B or --config, not both")
    if config:
        row = merge_from_config(wh, config, **options)
    elif model_a and model_b:
        row = merge_models(wh, model_a, model_b, t=t, method=method, **options)
    else:
        raise FeatstoreError("give the two models to merge (MODEL_A MODEL_B) or a mergekit --config")
    merge = row["hyperparams"]["merge"]
    click.echo(f"model {name} = {merge['method']}({', '.join(merge['parents'])}, t={merge['t']})")
    _echo_validation(row)


@main.command("merge-sweep")
@click.argument("model_a")
@click.argument("model_b")
@click.option("--steps", type=int, default=11, show_default=True, help="Evenly spaced t from 0 to 1.")
@click.option("--method", type=LibraryChoice("featstore.models.merge:METHODS"), default="slerp", show_default=True)
@click.option("--eval-tokens", type=int, default=None, help="Validation tokens per set [default: the preset's].")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def merge_sweep_command(wh: Warehouse, model_a: str, model_b: str, steps: int, method: str, eval_tokens, device) -> None:
    """Accuracy and loss of MODEL_A~MODEL_B merges over t on both validation sets (the paper's Figure 5)."""
    from featstore.models.merge import merge_sweep

    result = merge_sweep(wh, model_a, model_b, steps=steps, method=method, eval_tokens=eval_tokens, device=device)
    _echo_rows(result["rows"])
    for eval_set, ok in result["monotone"].items():
        direction = "falls" if eval_set == model_a else "rises"
        click.echo(f"accuracy on {eval_set} validation {direction} monotonically with t: {'yes' if ok else 'no'}")
    click.echo(f"rows in table merge_sweep; plot {result['plot']}")


@model_group.command("eval")
@click.argument("name")
@click.option("--preset", default="tiny", show_default=True,
              help=f"Model family preset whose evaluation domains to use: {' or '.join(MODEL_PRESETS)}.")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def model_eval_command(wh: Warehouse, name: str, preset: str, device) -> None:
    """Evaluate a registered model (e.g. an imported checkpoint) on a preset's domains; store the metrics."""
    from featstore.models.lm import evaluate_model

    _echo_validation(evaluate_model(wh, name, preset=preset, device=device))

# --- SAEs: train, evaluate, import ----------------------------------------------------------------

SAE_METRIC_COLUMNS = ("mse", "fvu", "l0", "l0_fraction", "dead_fraction", "ce_loss_recovered", "eval_tokens")


def _echo_sae_metrics(sae_id: str, metrics: dict) -> None:
    import pyarrow as pa

    keys = [k for k in SAE_METRIC_COLUMNS if k in metrics]
    echo_table(pa.table({"metric": keys, sae_id: [float(metrics[k]) for k in keys]}))
    hist = metrics.get("density_histogram") or {}
    if hist:
        click.echo(f"feature density (log10 bins {hist['log10_density_edges'][0]}..0): {hist['counts']}, never fired: {hist['never_fired']}")


def settings_options(settings_class, default_is: str = "the preset's"):
    """A decorator adding one option per field of `settings_class` with a help text; unset, each is None."""
    def add(command):
        for setting in reversed([f for f in fields(settings_class) if "help" in f.metadata]):
            flags = setting.metadata.get("flags") or ("--" + setting.name.replace("_", "-"),)
            kind = LibraryChoice(setting.metadata["choices"]) if "choices" in setting.metadata else type(setting.default)
            shown = default_is or setting.default
            help = f"{setting.metadata['help']} [default: {shown}]"
            command = click.option(*flags, setting.name, type=kind, default=None, help=help)(command)
        return command

    return add


class ArchitectureCommand(click.Command):
    """A command that also takes every SAE architecture's hyperparameters (--k, --l1, ...), read from
    the architecture registry on first use (it imports torch, which `featstore --help` should not)."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if not getattr(self, "hyperparameters_added", False):
            self.hyperparameters_added = True
            self.params.extend(_hyperparameter_options())
        return super().get_params(ctx)


def _hyperparameter_options() -> list[click.Option]:
    from featstore.saes import ARCHITECTURES
    from featstore.saes.base import option_flag

    users: dict[str, tuple] = {}
    for cls in ARCHITECTURES.values():
        for hyper in cls.config_class.hyperparameters():
            users.setdefault(hyper.name, (hyper, []))[1].append(cls.architecture)
    return [
        click.Option([option_flag(hyper), hyper.name], type=hyper.metadata["type"], default=None,
                     help=f"{hyper.metadata['help'].rstrip('.')} ({', '.join(archs)}; "
                          f"{'required' if hyper.default is None else f'default: {hyper.default}'}).")
        for hyper, archs in users.values()
    ]


# `sae_group` is defined once, in the warehouse section above (it also holds `sae add`).
@sae_group.command("train", cls=ArchitectureCommand)
@click.argument("model")
@click.option("--preset", type=click.Choice(list(SAE_PRESETS)), default="tiny", show_default=True)
@settings_options(TrainSettings)
@click.option("--same-init-as", default=None, help="Start from another SAE's saved initial weights.")
@click.option("--init-from", default=None,
              help="Start from another SAE's trained weights, e.g. the parent model's (a lineage-initialised SAE; "
                   "its drift is in view lineage_drift; not primary unless --primary).")
@click.option("--seed-of", default=None, help="Train a seed replica of this SAE: its settings and text, this --seed.")
@click.option("--id", "sae_id", default=None, help="[default: MODEL-ARCH-xEXPANSION-sSEED]")
@click.option("--source", default=None, help="Training text spec [default: the model's train_corpus].")
@click.option("--corpus", default=None, help="Train on a warehouse corpus slice instead.")
@click.option("--primary/--secondary", "is_primary", default=None, help="[default: primary unless the model has one]")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def sae_train_command(wh: Warehouse, model: str, preset: str, sae_id, source, corpus, same_init_as, init_from, seed_of,
                      is_primary, device, **settings) -> None:
    """Train an SAE on MODEL's MLP hidden activation, evaluate it and register it."""
    from featstore.saes.presets import sae_preset
    from featstore.saes.training import train_sae, train_seed_replica

    if seed_of:
        taken = [k for k, v in {**settings, "source": source, "corpus": corpus, "same_init_as": same_init_as,
                                "init_from": init_from}.items()
                 if v is not None and k != "seed"]
        if taken:
            raise FeatstoreError(f"--seed-of takes every setting from that SAE; drop --{taken[0].replace('_', '-')}")
        row = train_seed_replica(wh, seed_of, model=model, seed=settings["seed"], replica_id=sae_id, device=device)
    else:
        row = train_sae(wh, model, settings=sae_preset(preset, **settings), sae_id=sae_id, source=source, corpus=corpus,
                        same_init_as=same_init_as, init_from=init_from, is_primary=is_primary, device=device)
    click.echo(f"SAE {row['id']} ({row['d_in']} -> {row['d_sae']}, {row['architecture']}) at {row['path']}")
    _echo_sae_metrics(row["id"], row["metrics"])


@main.command("causal")
@click.argument("sae_a")
@click.argument("sae_b")
@click.option("--corpus", required=True, help="Corpus slice whose tokens both models read.")
@settings_options(CausalSettings, default_is="")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def causal_command(wh: Warehouse, sae_a: str, sae_b: str, corpus: str, device, **settings) -> None:
    """Check SAE_A's best matches in SAE_B causally: ablate each pair's features in their models and store
    whether they change the next-token distribution alike (match method `causal`, view causal_checks)."""
    from featstore.matching.causal import causal_evidence

    chosen = CausalSettings(**{k: v for k, v in settings.items() if v is not None})
    done = causal_evidence(wh, sae_a, sae_b, corpus, settings=chosen, device=device)
    click.echo(f"causal ({corpus}): {done['pairs']} pairs of {chosen.method} matches checked, {done['tested']} with a "
               f"position to read, {done['agreeing']} acting alike, {done['seconds']:.1f} s")
    echo_table(wh.named("matching/causal_summary", sae_a=sae_a, sae_b=sae_b, corpus=corpus))


# --- crosscoders ------------------------------------------------------------------------------------


@main.group("crosscoder")
def crosscoder_group() -> None:
    """Crosscoders: one dictionary over a parent's and a child's activations (docs/crosscoders.md)."""


@crosscoder_group.command("train")
@click.argument("parent")
@click.argument("child")
@settings_options(CrosscoderSettings, default_is="")
@click.option("--id", "crosscoder_id", default=None, help="[default: PARENT-CHILD-crosscoder-SPARSITY]")
@click.option("--source", default=None, help="Training text spec [default: the two models' training corpora, half each].")
@click.option("--corpus", default=None, help="Train on a warehouse corpus slice instead (last tenth held out).")
@click.option("--ingest", "ingest_on", multiple=True, help="Then store its activations on this corpus slice (repeatable).")
@click.option("--replace", is_flag=True, help="Replace a crosscoder of this id, and everything computed from it.")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def crosscoder_train_command(wh: Warehouse, parent: str, child: str, crosscoder_id, source, corpus, ingest_on, replace: bool,
                             device, **settings) -> None:
    """Train a crosscoder on PARENT's and CHILD's MLP hidden activations, classify its latents, register it."""
    import pyarrow as pa

    from featstore.crosscoders import catalog
    from featstore.text.slices import get_corpus

    chosen = CrosscoderSettings(**{k: v for k, v in settings.items() if v is not None})
    for name in ingest_on:
        get_corpus(wh, name)  # refused before training, not after
    row = catalog.train(wh, parent, child, settings=chosen, crosscoder_id=crosscoder_id, source=source, corpus=corpus,
                        replace=replace, device=device)
    click.echo(f"crosscoder {row['sae']} ({row['d_in']} -> {row['d_sae']}, {row['sparsity']}) of {parent} x {child} at {row['path']}")
    echo_table(pa.table({"metric": list(row["metrics"]), row["sae"]: [float(v) for v in row["metrics"].values()]}))
    for name in ingest_on:
        _echo_crosscoder_ingest(catalog.ingest(wh, row["sae"], name, device=device))


@crosscoder_group.command("ingest")
@click.argument("crosscoder_id")
@click.option("--corpus", "corpora", multiple=True, required=True, help="Corpus slice to ingest (repeatable).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Windows per forward pass.")
@click.option("--context", type=int, default=256, show_default=True, help="Tokens per window (within a document).")
@click.option("--device", default=None, help="[default: cuda when available]")
@pass_warehouse
def crosscoder_ingest_command(wh: Warehouse, crosscoder_id: str, corpora, batch_size: int, context: int, device) -> None:
    """Store a crosscoder's latent activations on corpus slices (both models run on every window)."""
    from featstore.activations.ingest import check_options
    from featstore.crosscoders import catalog
    from featstore.text.slices import get_corpus

    check_options(batch_size, context, "float32")
    catalog.get_crosscoder(wh, crosscoder_id)
    for name in corpora:
        get_corpus(wh, name)
    for name in corpora:
        _echo_crosscoder_ingest(catalog.ingest(wh, crosscoder_id, name, batch_size=batch_size, context=context, device=device))


def _echo_crosscoder_ingest(done: dict) -> None:
    click.echo(f"{done['sae']} on {done['corpus']}: {done['rows']:,} rows over {done['tokens']:,} tokens, "
               f"{done['tokens_per_s']:,.0f} tokens/s -> {done['path']}")


@sae_group.command("eval")
@click.argument("sae_id")
@click.option("--source", default=None, help="Evaluation text spec [default: validation part of the model's train_corpus].")
@click.option("--corpus", default=None, help="Evaluate on a warehouse corpus slice instead.")
@click.option("--tokens", "eval_tokens", type=int, default=20_000, show_default=True)
@click.option("--device", default=None, help="[default: cuda when available]")
@click.option("--saebench", "saebench", type=click.Path(dir_okay=False, writable=True), default=None, metavar="OUT.json",
              help="Also write SAEBench's `core` eval result of this evaluation to OUT.json (see docs/saes.md).")
@pass_warehouse
def sae_eval_command(wh: Warehouse, sae_id: str, source, corpus, eval_tokens: int, device, saebench) -> None:
    """Re-evaluate a registered SAE and record MSE, FVU, L0, dead fraction, CE loss recovered, KL, cosine,
    shrinkage and frequency bands."""
    from featstore.saes.training import evaluate_sae

    metrics = evaluate_sae(wh, sae_id, source=source, corpus=corpus, eval_tokens=eval_tokens, device=device,
                           saebench=saebench)
    _echo_sae_metrics(sae_id, metrics)
    click.echo("KL with SAE {kl_div_with_sae:.4g} (zero ablation {kl_div_with_ablation:.4g}), cosine {cossim:.4g}, "
               "l2 ratio {l2_ratio:.4g}, relative bias {relative_reconstruction_bias:.4g}, L1 {l1:.4g}".format(**metrics))
    if saebench:
        click.echo(f"SAEBench core eval result: {saebench}")

# --- interpretability: explain, score -------------------------------------------------------------


def _feature_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of feature numbers, e.g. 3,17,42") from None


def _interp_options(command):
    """Options shared by explain, score and transfer: which features, which backend, how to call it."""
    options = [
        click.option("--corpus", default=None, help="Corpus the activations come from [default: the SAE's only one]."),
        click.option("--backend", type=click.Choice(BACKENDS), default="builtin", show_default=True,
                     help="builtin: offline rules; openai: any OpenAI-compatible endpoint; hf: a local causal LM folder."),
        click.option("--model", default=None, help="Endpoint model name (openai) or model folder (hf)."),
        click.option("--base-url", default=None,
                     help="openai: endpoint base URL [default: $OPENAI_BASE_URL or api.openai.com/v1]."),
        click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
                     help="openai: environment variable holding the key."),
        click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True,
                     help="Features in flight at once."),
        click.option("--timeout", type=float, default=60.0, show_default=True, help="openai: seconds per request."),
        click.option("--max-retries", type=click.IntRange(0, 20), default=5, show_default=True,
                     help="openai: retries with exponential backoff on 429, 5xx, timeouts and malformed replies."),
        click.option("--device", default=None, help="hf: cuda / cpu [default: cuda when available]."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the example sampling."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _backend(opts: dict):
    from featstore.interpret.backends import make_backend

    return make_backend(opts["backend"], model=opts["model"], base_url=opts["base_url"], api_key_env=opts["api_key_env"],
                        timeout=opts["timeout"], max_retries=opts["max_retries"], device=opts["device"])


def _fmt_score(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def _check_failures(result: dict) -> None:
    if result["failed"]:
        first = next(iter(result["failed"].items()))
        raise FeatstoreError(
            f"{len(result['failed'])} feature(s) failed and were not stored (feature {first[0]}: {first[1]}); rerun to retry them"
        )


@main.command("explain")
@click.argument("sae")
@click.option("--features", callback=_feature_list, default=None, help="Comma-separated features, e.g. 3,17,42.")
@click.option("--top", type=int, default=None, help="The N most frequently firing features [default: all that fire].")
@_interp_options
@pass_warehouse
def explain_command(wh: Warehouse, sae: str, features, top, **opts) -> None:
    """Sample examples for features of SAE and explain them (resumable: explained features are skipped)."""
    from featstore.interpret.scoring import explain

    result = explain(wh, sae, opts["corpus"], features=features, top=top, backend=_backend(opts), seed=opts["seed"],
                     concurrency=opts["concurrency"])
    click.echo(f"{sae} on {result['corpus']}: {result['explained']} explained by {result['explainer']}, "
               f"{result['already_explained']} already were")
    echo_table(wh.explanations.listing(sae, result["corpus"], result["explainer"], result["chosen"]))
    _check_failures(result)


@main.command("score")
@click.argument("sae")
@click.option("--features", callback=_feature_list, default=None, help="Comma-separated features, e.g. 3,17,42.")
@click.option("--top", type=int, default=None, help="The N most frequently firing features [default: all that fire].")
@click.option("--explainer", default=None,
              help="Score the stored explanations of this explainer (e.g. openai:gpt-4o) [default: explain with --backend].")
@click.option("--baseline", is_flag=True, help="Also score each feature with another feature's explanation and print both means.")
@_interp_options
@pass_warehouse
def score_command(wh: Warehouse, sae: str, features, top, explainer, baseline: bool, **opts) -> None:
    """Simulate features of SAE from their explanations and score them (Pearson of simulated vs true)."""
    from featstore.interpret.scoring import score, shuffled_baseline

    kwargs = dict(features=features, top=top, backend=_backend(opts), explainer=explainer, seed=opts["seed"],
                  concurrency=opts["concurrency"])
    if baseline:
        result = shuffled_baseline(wh, sae, opts["corpus"], **kwargs)
        click.echo(f"{sae} on {result['corpus']}, {result['features']} features, explainer {result['explainer']}, "
                   f"simulator {result['simulator']}")
        click.echo(f"  mean score, own explanations:      {_fmt_score(result['explained_mean'])}")
        click.echo(f"  mean score, shuffled explanations: {_fmt_score(result['shuffled_mean'])}")
    else:
        result = score(wh, sae, opts["corpus"], **kwargs)
        click.echo(f"{sae} on {result['corpus']}: {result['scored']} scored, {result['already_scored']} already were; "
                   f"mean score {_fmt_score(result['mean_score'])} ({result['explainer']} explanations, "
                   f"{result['simulator']} simulator)")
    echo_table(wh.scores.summary(sae, result["corpus"]))
    _check_failures(result)


@main.command("transfer")
@click.argument("parent_sae")
@click.argument("child_sae")
@click.option("--threshold", type=float, default=0.8, show_default=True, help="Minimum r of a parent feature's best child match.")
@stat_option("Correlation run whose best matches pair the features.")
@click.option("--explainer", default=None, help="Use the parent's stored explanations of this explainer.")
@_interp_options
@pass_warehouse
def transfer_command(wh: Warehouse, parent_sae: str, child_sae: str, threshold: float, stat: str, explainer, **opts) -> None:
    """Score each matched parent feature's explanation on its child feature's activations."""
    from featstore.interpret.scoring import transfer

    result = transfer(wh, parent_sae, child_sae, opts["corpus"], threshold=threshold, stat=stat, backend=_backend(opts),
                      explainer=explainer, seed=opts["seed"], concurrency=opts["concurrency"])
    click.echo(f"{parent_sae} -> {child_sae} on {result['corpus']}: {result['pairs']} matched features at r >= {threshold}")
    for label, key in (("parent, own explanation", "parent_mean"), ("child, parent's explanation", "transfer_mean"),
                       ("child, own explanation", "child_mean")):
        click.echo(f"  mean score, {label + ':':<29} {_fmt_score(result[key])}")
    echo_table(wh.scores.transfer_listing(parent_sae, child_sae, result["corpus"], result["simulator"]))
    _check_failures(result)

# --- pipeline: run, report, export, sql -----------------------------------------------------------


@main.command("run")
@click.argument("experiment_file", metavar="[EXPERIMENT.toml]", required=False,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
              help="Change one field of the experiment for this run, e.g. saes.default.seed=1 (repeatable).")
@click.option("--preset", type=click.Choice(["tiny", "paper"]), default=None,
              help="Shorthand for experiments/paper-tiny.toml or experiments/paper.toml.")
@click.option("--plan", "show_plan", is_flag=True, help="Print every step, whether it would run and why; run nothing.")
@click.option("--prune", is_flag=True, help="First delete what steps no longer in the experiment made.")
@click.option("--force", "force", multiple=True, metavar="STEP", help="Redo STEP and every step after it (repeatable).")
@click.option("--device", default=None, help="cuda / cpu [default: cuda when available].")
@click.option("--seed", default=None, type=int, help="Same as --set seed=N.")
@pass_warehouse
def run_command(wh: Warehouse, experiment_file: Path | None, overrides: tuple[str, ...], preset: str | None,
                show_plan: bool, prune: bool, force: tuple[str, ...], device: str | None, seed: int | None) -> None:
    """Run an experiment (default: the built-in tiny one), resumable: models, SAEs, ingest, correlations,
    persistence, scores, report. Steps whose inputs are unchanged are skipped."""
    from featstore.pipeline.experiment import experiment_file_for, load_experiment
    from featstore.pipeline.steps import plan, run_pipeline

    overrides = overrides + ((f"seed={seed}",) if seed is not None else ())
    experiment = load_experiment(experiment_file_for(experiment_file, preset), overrides)
    if show_plan:
        rows = plan(wh, experiment, force=force)
        for r in rows:
            click.echo(f"{'run ' if r['runs'] else 'skip'}  {r['step']:<36} {r['reason']}")
        click.echo(f"{sum(r['runs'] for r in rows)} of {sum(not r['reason'].startswith('removed') for r in rows)} steps would run")
        return
    result = run_pipeline(wh, experiment, force=force, device=device, prune=prune, log=click.echo)
    for name, table in result["summary"].items():
        click.echo(f"\n{name}")
        echo_table(table)
    ran = sum(r["status"] == "ran" for r in result["steps"])
    click.echo(f"\n{ran} of {len(result['steps'])} steps ran, {result['seconds']:.1f} s; report: {wh.root / 'report' / 'index.html'}")


@main.command("report")
@click.option("--features", type=click.IntRange(min=0), default=None, metavar="N",
              help="Also write static feature pages: the N most frequent per SAE plus every feature shown.")
@pass_warehouse
def report_command(wh: Warehouse, features: int | None) -> None:
    """Write <warehouse>/report/index.html with the paper's figures from the warehouse's views."""
    from featstore.browser.export import report_with_pages

    click.echo(f"report: {report_with_pages(wh, features)}")


@main.command("serve")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (loopback by default).")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host other machines can reach: they can read the whole warehouse, without authentication.")
@pass_warehouse
def serve_command(wh: Warehouse, port: int, host: str, allow_remote: bool) -> None:
    """The feature browser: a read-only web app over the warehouse (lineage, features, search, SQL), served by waitress."""
    from featstore.browser.app import serve

    serve(wh, host=host, port=port, allow_remote=allow_remote, log=click.echo)


@main.command("export")
@click.argument("name", required=False)
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="parquet", show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to write NAME.<format> into [default: <warehouse>/exports].")
@click.option("--engine-layout", "layout", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instead of NAME: write every catalog table and the activation partitions as Parquet into this folder.")
@pass_warehouse
def export_command(wh: Warehouse, name: str | None, fmt: str, out_dir: Path | None, layout: Path | None) -> None:
    """Write any table or view to a Parquet, CSV or Arrow IPC file, or the whole warehouse as Parquet."""
    from featstore.export.tables import export, export_layout

    if layout is not None:
        done = export_layout(wh, layout)
        click.echo(f"{done['tables']} tables and {done['partition_files']} activation files -> {done['path']}")
        return
    if name is None:
        raise FeatstoreError("name a table or view to export, or give --engine-layout DIR")
    done = export(wh, name, fmt, out_dir)
    click.echo(f"{done['rows']} rows -> {done['path']} ({done['bytes']:,} bytes)")


@main.command("init")
@click.option("--catalog", default=None, metavar="postgres://USER@HOST:PORT/DB",
              help="Keep the catalog in a DuckLake on this PostgreSQL database (many writers on many machines) "
                   "[default: the single file featstore.duckdb].")
@click.option("--data-path", default=None, help="Where a DuckLake keeps its catalog data files [default: <warehouse>/lake].")
@pass_warehouse
def init_command(wh: Warehouse, catalog: str | None, data_path: str | None) -> None:
    """Create the warehouse (or attach a folder to an existing DuckLake catalog): see docs/scaling.md."""
    if catalog is None:
        if data_path is not None:
            raise FeatstoreError("--data-path is for a DuckLake catalog; give --catalog postgres://… too")
        wh.create()
        click.echo(f"warehouse {wh.root}: catalog {wh.db_path.name} (one writer at a time)")
        return
    wh = Warehouse.create_lake(wh.given_root, catalog, data_path)
    click.echo(f"warehouse {wh.root}: DuckLake catalog on {wh.lake.where}, its data in {wh.lake.data_dir}")


@main.command("shell-init")
@pass_warehouse
def shell_init_command(wh: Warehouse) -> None:
    """Print the SQL that opens this warehouse in a DuckDB shell: `featstore shell-init > init.sql; duckdb -init init.sql`."""
    click.echo(wh.shell_init(), nl=False)


@main.command("maintain")
@click.option("--older-than", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds: replaced files and (on a DuckLake) snapshots older than this go; younger readers are safe.")
@pass_warehouse
def maintain_command(wh: Warehouse, older_than: float) -> None:
    """Reclaim space: replaced partition files; on a DuckLake also snapshot expiry and compaction."""
    done = wh.maintain(older_than)
    snapshots = (f", snapshots {done['snapshots_before']} -> {done['snapshots_after']}" if "snapshots_before" in done else "")
    click.echo(f"{done['backend']}: removed {done['partition_files_removed']} partition file(s), "
               f"{done['bytes_freed']:,} bytes{snapshots}")


@main.command("relocate")
@pass_warehouse
def relocate_command(wh: Warehouse) -> None:
    """After moving or copying a warehouse: point its catalog and `activations` view at this folder."""
    done = wh.relocate()
    click.echo(f"warehouse {done['root']}: {done['partitions']} partition(s), activations view rebuilt for this folder")


@main.command("export-features")
@click.argument("sae")
@click.option("--format", "fmt", type=click.Choice(["neuronpedia", "neuronpedia-api", "delphi", "saedashboard"]), required=True,
              help="neuronpedia: its import layout v1/<model>/<source>/; neuronpedia-api: upload-batch request bodies; "
                   "delphi: its latent cache; saedashboard: its per-feature batch JSON.")
@click.option("--corpus", default=None, help="Corpus the activations come from [default: the SAE's only one].")
@click.option("--features", callback=_feature_list, default=None, help="Comma-separated features [default: all that fire].")
@click.option("--context", type=int, default=256, show_default=True,
              help="Tokens per example window (as at ingest); delphi: a multiple of its 32-token examples.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder [default: <warehouse>/exports/SAE-FORMAT].")
@pass_warehouse
def export_features_command(wh: Warehouse, sae: str, fmt: str, corpus, features, context: int, out_dir) -> None:
    """Write SAE's features for a feature viewer (Neuronpedia, delphi, SAEDashboard) from the stored activations."""
    from featstore.export.viewers import export_features

    done = export_features(wh, sae, fmt, corpus=corpus, out_dir=out_dir, context=context, features=features)
    click.echo(f"{done['features']} features of {sae} on {done['corpus']} -> {done['path']} ({fmt}, {done['files']} files)")


@main.command("sql")
@click.argument("query")
@pass_warehouse
def sql_command(wh: Warehouse, query: str) -> None:
    """Run one SQL statement on a read-only connection and print its result."""
    from featstore.export.tables import run_sql

    result = run_sql(wh, query)
    if result is not None:
        echo_table(result)


if __name__ == "__main__":
    main()
