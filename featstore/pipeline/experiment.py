"""Experiments as data: one TOML file declares the corpora, the lineage, the SAEs, the slices and the analyses.

`load_experiment(path, overrides)` reads the file (or the built-in `experiments/paper-tiny.toml`),
applies `--set key.path=value` overrides, fills defaults and checks everything that can be checked
without running: unknown keys, unknown parents, cycles, merges without two parents, tokenizer
mismatches, missing sources, wrong types. Every problem is one FeatstoreError line naming the file
and the key. `featstore.pipeline.steps.build_steps` turns the Experiment into steps.
"""

from __future__ import annotations

import glob
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from featstore.errors import FeatstoreError
from featstore.text.debian import DEFAULT_OUT as DEFAULT_REAL_CORPORA

SCHEDULE_KEYS = ("lr", "weight_decay", "warmup_steps", "batch_size", "max_tokens", "epochs", "grad_clip")
SHAPE_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers",
              "block_size", "rope_theta", "max_position_embeddings", "eval_tokens")
KINDS = ("train", "finetune", "merge", "import")
INITS = ("independent", "shared")  # [saes.default] init: each SAE from its own seed, or all from `seed`
LINEAGE_INIT = "parent"  # [saes.MODEL.ENTRY] init: also this, start from the parent model's main SAE, trained
INIT_FRACTION = 0.25     # ... for this share of the tokens its settings give, unless `init_fraction` says otherwise
MAIN_SAE = "main"  # the entry name of a model's primary SAE: id `<model>-sae`, step `sae-<model>`
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
WEIGHTED = re.compile(r"^(?P<name>.+?)(?P<weight>=(\d+(\.\d*)?|\.\d+))?$")


def experiments_dir() -> Path:
    """The shipped experiments/ folder: inside the package (featstore/experiments) when installed from a
    wheel, else the checkout's. (A namespace package's `importlib.resources` path is no file path.)"""
    package = Path(__file__).resolve().parents[1]
    installed = package / "experiments"
    return installed if installed.is_dir() else package.parent / "experiments"


DEFAULT_EXPERIMENT = "paper-tiny.toml"


# -- the experiment model ----------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    name: str
    source: str
    evaluate: bool = True  # its validation part measures every model (a per-domain metric named after it)


@dataclass(frozen=True)
class Model:
    name: str
    kind: str                       # train | finetune | merge | import
    step: str                       # the pipeline step that makes it
    parents: tuple[str, ...] = ()
    corpus: str | None = None       # resolved corpus spec it trains on (train, finetune; recorded for import)
    schedule: dict = field(default_factory=dict)  # overrides of the family's train / finetune schedule
    method: str = "slerp"           # merge
    t: float = 0.5                  # merge: weight toward the second parent
    path: str | None = None         # import: HF folder or hub id
    relation: str | None = None     # import: edge type to its parents
    home: str | None = None         # slice its explanations are read on


@dataclass(frozen=True)
class SAE:
    model: str
    entry: str                      # `main` is the model's primary SAE
    settings: dict = field(default_factory=dict)  # TrainSettings fields
    path: str | None = None         # import a SAELens folder instead of training
    slices: tuple[str, ...] = ()
    init: str | None = None         # an entry's own `init` (independent, shared, parent): a control of initialisation
    init_from: str | None = None    # `init = "parent"`: the parent's main SAE it starts from (lineage-initialised)

    @property
    def id(self) -> str:
        return f"{self.model}-sae" if self.entry == MAIN_SAE else f"{self.model}-sae-{self.entry}"

    @property
    def label(self) -> str:
        """Suffix of its step names: `sae-<label>`, `ingest-<label>`."""
        return self.model if self.entry == MAIN_SAE else f"{self.model}-{self.entry}"


@dataclass(frozen=True)
class CrosscoderEntry:
    name: str                       # its id in the warehouse (an SAE row) and its step `crosscoder-<name>`
    parent: str
    child: str
    settings: dict = field(default_factory=dict)  # CrosscoderSettings fields
    source: str | None = None       # resolved corpus spec it trains on (None: the two models' corpora)
    slices: tuple[str, ...] = ()    # slices its activations are stored on


@dataclass(frozen=True)
class Slice:
    name: str
    corpus: str                     # resolved spec
    part: str = "validation"
    tokens: int = 20_000
    doc_tokens: int | None = None   # per-document token cap, so one long file cannot dominate
    min_docs: int | None = None
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sweep:
    name: str
    models: tuple[str, str]
    steps: int = 11
    method: str = "slerp"
    eval_tokens: int | None = None


@dataclass(frozen=True)
class Analyses:
    edges: tuple[tuple[str, str], ...]
    stats: tuple[str, ...] = ("all_tokens",)
    r_floor: float = 0.2
    ingest_batch: int = 16
    explain_top: int = 24
    explain_sample: int = 48
    sweeps: tuple[Sweep, ...] = ()
    causal: dict | None = None          # [analyses.causal]: CausalSettings fields; None: no causal checks
    causal_slices: tuple[str, ...] = ()  # where they run (default: each edge's child's home slice)


@dataclass(frozen=True)
class Experiment:
    name: str
    source: str                     # the file it came from (for messages)
    seed: int
    family: str                     # model preset (featstore.models.presets) the shapes and schedules start from
    family_overrides: dict          # shape keys and {"base": {...}, "finetune": {...}} schedules
    tokenizer: str                  # bpe | mistral | a folder, SentencePiece file or hub id
    tokenizer_overrides: dict       # vocab_size, tokenizer_chars
    tokenizer_corpora: tuple[str, ...] | None
    corpora: dict[str, Corpus]
    models: dict[str, Model]
    saes: tuple[SAE, ...]
    slices: dict[str, Slice]
    analyses: Analyses
    crosscoders: tuple[CrosscoderEntry, ...] = ()

    def domains(self) -> dict[str, str]:
        """Evaluation domain (corpus name) -> spec: every model's validation metrics are measured on these."""
        return {c.name: c.source for c in self.corpora.values() if c.evaluate}

    def training_corpora(self) -> dict[str, str]:
        """The corpora the family's models train on, each under the first model that trains on it: what a
        trained BPE sees by default (so a model added on a corpus already there changes nothing else)."""
        first = {}
        for m in self.models.values():
            if m.kind in ("train", "finetune"):
                first.setdefault(m.corpus, m.name)
        return {name: spec for spec, name in first.items()}

    def root(self, model: str) -> str:
        """The model its tokenizer comes from: a trained base, or an import."""
        m = self.models[model]
        return model if m.kind in ("train", "import") else self.root(m.parents[0])


# -- loading ------------------------------------------------------------------------------------


def load_experiment(path: str | Path | None = None, overrides: tuple[str, ...] | list[str] = ()) -> Experiment:
    """Read, override, fill and check an experiment file; the built-in tiny experiment when `path` is None."""
    file = Path(path) if path is not None else experiments_dir() / DEFAULT_EXPERIMENT
    label = str(path) if path is not None else f"experiments/{DEFAULT_EXPERIMENT}"
    data = read_toml(file, label)
    for item in overrides:
        apply_override(data, item, label)
    return Reader(label).experiment(data, default_name=file.stem)


def read_toml(file: Path, label: str, seen: tuple[Path, ...] = ()) -> dict:
    """The file's tables; with `extends = "OTHER.toml"` (beside it, else a shipped file) laid over that
    file's, table by table: what it writes wins, the rest is the other file's (its name excepted)."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeatstoreError(f"{label}: no such experiment file; see experiments/ for examples") from None
    except UnicodeDecodeError as exc:
        raise FeatstoreError(f"{label}: not UTF-8 text (byte {exc.start:,}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise FeatstoreError(f"{label}: not valid TOML ({exc})") from None
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise FeatstoreError(f"{label}: extends: expected a file name, got {_kind(base_name)}")
    beside = file.parent / base_name
    base_file = beside if beside.is_file() else experiments_dir() / base_name
    if base_file.resolve() in (*seen, file.resolve()):
        raise FeatstoreError(f"{label}: extends: {base_name} leads back to this file (a cycle)")
    base = read_toml(base_file, f"{label}: extends: {base_name}", (*seen, file.resolve()))
    base.pop("name", None)  # an experiment is named by its own file
    return _laid_over(base, data)


def _laid_over(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _laid_over(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def apply_override(data: dict, item: str, label: str) -> None:
    """`a.b.c=value`: value is read as a TOML value (number, bool, string, list), else taken as a string."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise FeatstoreError(f"--set {item!r}: write KEY.PATH=VALUE, e.g. --set saes.default.seed=1")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    *tables, last = key.strip().split(".")
    node = data
    for i, part in enumerate(tables):
        if i == 1 and tables[0] == "corpora" and isinstance(node.get(part), str):
            node[part] = {"source": node[part]}  # `lua = "PATH"` is short for `lua = { source = "PATH" }`
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise FeatstoreError(f"{label}: --set {key}: {'.'.join(tables[: i + 1])} is not a table")
    node[last] = value


class Reader:
    """Takes keys out of the parsed TOML one table at a time; what is left over is an unknown key."""

    def __init__(self, label: str):
        self.label = label

    def fail(self, key: str, message: str) -> FeatstoreError:
        return FeatstoreError(f"{self.label}: {key}: {message}")

    def table(self, data: dict, key: str, where: str) -> dict:
        value = data.pop(key, {})
        if not isinstance(value, dict):
            raise self.fail(f"{where}{key}", f"expected a table, got {_kind(value)}")
        return dict(value)

    def take(self, data: dict, key: str, where: str, types: type | tuple, default: Any = None, required: bool = False):
        if key not in data:
            if required:
                raise self.fail(f"{where}{key}", "missing (required)")
            return default
        value = data.pop(key)
        types = types if isinstance(types, tuple) else (types,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            wanted = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise self.fail(f"{where}{key}", f"expected {wanted}, got {_kind(value)} {value!r}")
        return value

    def strings(self, data: dict, key: str, where: str, default: list | None = None, required: bool = False) -> list | None:
        """A list of names (of corpora, models, slices, statistics): strings, each checked here."""
        items = self.take(data, key, where, list, default, required)
        for i, item in enumerate(items or ()):
            if not isinstance(item, str):
                raise self.fail(f"{where}{key}[{i}]", f"expected a string, got {_kind(item)} {item!r}")
        return items

    def bounded(self, data: dict, key: str, where: str, types: type, low: float, high: float = math.inf):
        """A finite number from `low` to `high` (NaN and infinity never are), or None when absent."""
        value = self.take(data, key, where, types)
        if value is not None and not (low <= value <= high and math.isfinite(value)):
            wanted = f"from {low} to {high}" if math.isfinite(high) else f"at least {low}"
            raise self.fail(f"{where}{key}", f"must be {wanted} (got {value})")
        return value

    def done(self, data: dict, where: str) -> None:
        if data:
            key = next(iter(data))
            raise self.fail(f"{where}{key}", "unknown key; see docs/experiments.md for every key")

    def names(self, data: dict, where: str) -> None:
        for name in data:
            if not NAME.match(name) or name == "default":
                raise self.fail(f"{where}{name}", "names use letters, digits, '_', '-', '.' ('default' is reserved)")

    # -- sections --------------------------------------------------------------------------------

    def experiment(self, data: dict, default_name: str) -> Experiment:
        from featstore.models.presets import MODEL_PRESETS as FAMILIES

        data = dict(data)
        name = self.take(data, "name", "", str, default_name)
        seed = self.take(data, "seed", "", int, 0)
        self.take(data, "description", "", str)
        family = self.table(data, "family", "")
        preset = self.take(family, "preset", "family.", str, "tiny")
        if preset not in FAMILIES:
            raise self.fail("family.preset", f"unknown model preset {preset!r}; use one of {', '.join(FAMILIES)}")
        family_overrides = self.family(family)
        corpora = self.corpora(self.table(data, "corpora", ""))
        tok = self.table(data, "tokenizer", "")
        tokenizer = self.take(tok, "source", "tokenizer.", str, FAMILIES[preset].tokenizer)
        tokenizer_overrides = {k: v for k, v in (("vocab_size", self.take(tok, "vocab_size", "tokenizer.", int)),
                                                  ("tokenizer_chars", self.take(tok, "sample_chars", "tokenizer.", int)))
                               if v is not None}
        tok_corpora = self.strings(tok, "corpora", "tokenizer.")
        if tok_corpora is not None:
            tok_corpora = tuple(self.resolve(corpora, c, f"tokenizer.corpora[{i}]") for i, c in enumerate(tok_corpora))
        self.done(tok, "tokenizer.")
        self.check_tokenizer(tokenizer)
        models = self.models(self.table(data, "models", ""), corpora)
        slices = self.slices(self.table(data, "slices", ""), corpora, models)
        for m in models.values():
            if m.home is not None and m.home not in slices:
                raise self.fail(f"models.{m.name}.home", f"unknown slice {m.home!r}; declare it under [slices]")
        saes = self.saes(self.table(data, "saes", ""), models, slices, seed, preset)
        analyses = self.analyses(self.table(data, "analyses", ""), models, slices, seed)
        crosscoders = self.crosscoders(self.table(data, "crosscoders", ""), corpora, models, slices, saes, seed)
        self.done(data, "")
        experiment = Experiment(name, self.label, seed, preset, family_overrides, tokenizer, tokenizer_overrides,
                                tok_corpora, corpora, models, saes, slices, analyses, crosscoders)
        self.check_tokenizers(experiment)
        return experiment

    def family(self, family: dict) -> dict:
        overrides = {}
        for key in SHAPE_KEYS:
            value = self.bounded(family, key, "family.", float if key == "rope_theta" else int, 1)
            if value is not None:
                overrides[key] = value
        for stage in ("base", "finetune"):
            schedule = self.schedule(self.table(family, stage, "family."), f"family.{stage}.")
            if schedule:
                overrides[stage] = schedule
        self.done(family, "family.")
        return overrides

    def schedule(self, data: dict, where: str) -> dict:
        out = {}
        for key in SCHEDULE_KEYS:
            value = self.take(data, key, where, float if key in ("lr", "weight_decay", "grad_clip") else int)
            if value is not None:
                positive = key in ("lr", "batch_size", "max_tokens", "epochs")
                if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
                    raise self.fail(f"{where}{key}", f"must be {'positive' if positive else '>= 0'} (got {value})")
                out[key] = value
        return out

    def corpora(self, data: dict) -> dict[str, Corpus]:
        self.names(data, "corpora.")
        out = {}
        for name, value in data.items():
            where = f"corpora.{name}."
            spec = {"source": value} if isinstance(value, str) else value
            if not isinstance(spec, dict):
                raise self.fail(f"corpora.{name}", f"expected a source string or a table, got {_kind(value)}")
            spec = dict(spec)
            source = self.take(spec, "source", where, str, required=True)
            evaluate = self.take(spec, "evaluate", where, bool, True)
            self.done(spec, where)
            self.check_source(source, f"{where}source")
            out[name] = Corpus(name, source, evaluate)
        return out

    def resolve(self, corpora: dict[str, Corpus], expr: str, key: str) -> str:
        """`lua` or a mixture of declared corpora `python=0.5+english=0.5` -> the spec with sources in place."""
        parts = []
        for item in expr.split("+"):
            match = WEIGHTED.match(item.strip())
            name = match["name"] if match else item
            if name not in corpora:
                known = ", ".join(corpora) or "none declared"
                raise self.fail(key, f"unknown corpus {name!r} (corpora: {known}); declare it under [corpora]")
            parts.append(corpora[name].source + (match["weight"] or ""))
        return "+".join(parts)

    def check_source(self, source: str, key: str) -> None:
        from featstore.text.mixtures import parse_spec
        from featstore.text.sources import (
            GENERATED_PREFIX,
            HUB_ID,
            HUB_PREFIX,
            STDLIB,
            parse_generated,
        )

        try:
            components = parse_spec(source)
            for c in components:
                if c.source.startswith(GENERATED_PREFIX):
                    parse_generated(c.source[len(GENERATED_PREFIX):])
        except FeatstoreError as exc:
            raise self.fail(key, str(exc)) from None
        for c in components:
            if c.source == STDLIB or c.source.startswith((GENERATED_PREFIX, HUB_PREFIX)):
                continue
            path = Path(c.source).expanduser()
            if path.exists() or (glob.has_magic(c.source) and glob.glob(str(path), recursive=True)):
                continue
            if HUB_ID.match(c.source) and not c.source.startswith((".", "/", "~")):
                continue  # a hub dataset id: checked when it is read
            build = " or build it with `featstore corpus debian`" if path.is_relative_to(DEFAULT_REAL_CORPORA.expanduser()) else ""
            raise self.fail(key, f"{c.source} does not exist; point it at a file, folder or glob (e.g. --set {key}=PATH){build}")

    def check_tokenizer(self, tokenizer: str) -> None:
        if tokenizer in ("bpe", "mistral"):
            return
        path = Path(tokenizer).expanduser()
        from featstore.text.sources import HUB_ID

        if not path.exists() and (tokenizer.startswith((".", "/", "~")) or not HUB_ID.match(tokenizer)):
            raise self.fail("tokenizer.source", f"{tokenizer} does not exist; use bpe, mistral, a folder or a hub id")

    def models(self, data: dict, corpora: dict[str, Corpus]) -> dict[str, Model]:
        self.names(data, "models.")
        models: dict[str, Model] = {}
        for name, value in data.items():
            if not isinstance(value, dict):
                raise self.fail(f"models.{name}", f"expected a table, got {_kind(value)}")
            models[name] = self.model(name, dict(value), corpora)
        if not models:
            raise self.fail("models", "no models declared; add a [models.NAME] table")
        for m in models.values():
            for parent in m.parents:
                if parent not in models:
                    key = "parent" if m.kind == "finetune" else "parents"
                    raise self.fail(f"models.{m.name}.{key}", f"unknown parent {parent!r}; declared models: {', '.join(models)}")
        for m in models.values():
            self.check_cycle(models, m.name, ())
        return dict(_lineage_order(models))

    def model(self, name: str, spec: dict, corpora: dict[str, Corpus]) -> Model:
        where = f"models.{name}."
        inferred = "finetune" if "parent" in spec else "merge" if "parents" in spec and "path" not in spec else (
            "import" if "path" in spec else "train")
        kind = self.take(spec, "kind", where, str, inferred)
        if kind not in KINDS:
            raise self.fail(f"{where}kind", f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        step = self.take(spec, "step", where, str, f"{kind}-{name}")
        if not NAME.match(step):
            raise self.fail(f"{where}step", f"step names use letters, digits, '_', '-', '.' (got {step!r})")
        home = self.take(spec, "home", where, str)
        fields: dict[str, Any] = {"name": name, "kind": kind, "step": step, "home": home}
        if kind in ("train", "finetune"):
            if kind == "finetune":
                fields["parents"] = (self.take(spec, "parent", where, str, required=True),)
            fields["corpus"] = self.resolve(corpora, self.take(spec, "corpus", where, str, required=True), f"{where}corpus")
            fields["schedule"] = self.schedule(spec, where)
        elif kind == "merge":
            parents = self.strings(spec, "parents", where, required=True)
            if len(parents) != 2 or parents[0] == parents[1]:
                raise self.fail(f"{where}parents", f"a merge needs two different parent models, got {parents!r}")
            from featstore.models.merge import METHODS

            method = self.take(spec, "method", where, str, "slerp")
            if method not in METHODS:
                raise self.fail(f"{where}method", f"unknown merge method {method!r}; use {' or '.join(METHODS)}")
            fields.update(parents=tuple(parents), method=method, t=self.merge_t(spec, where))
        else:
            fields["path"] = self.take(spec, "path", where, str, required=True)
            self.check_import(fields["path"], f"{where}path")
            parents = self.strings(spec, "parents", where, [])
            fields["parents"] = tuple(parents)
            relation = self.take(spec, "relation", where, str, "merge" if len(parents) > 1 else "finetune")
            if relation not in ("finetune", "merge"):
                raise self.fail(f"{where}relation", f"use finetune or merge, got {relation!r}")
            fields["relation"] = relation
            corpus = self.take(spec, "corpus", where, str)
            fields["corpus"] = self.resolve(corpora, corpus, f"{where}corpus") if corpus else None
        self.done(spec, where)
        return Model(**fields)

    def merge_t(self, spec: dict, where: str) -> float:
        t = self.take(spec, "t", where, float, 0.5)
        if not 0 <= t <= 1:
            raise self.fail(f"{where}t", f"must be a number between 0 and 1, got {t!r}")
        return t

    def check_import(self, path: str, key: str) -> None:
        from featstore.text.sources import HUB_ID

        if not Path(path).expanduser().exists() and (path.startswith((".", "/", "~")) or not HUB_ID.match(path)):
            raise self.fail(key, f"{path} does not exist; give an HF model folder or a hub id")

    def check_cycle(self, models: dict[str, Model], name: str, path: tuple[str, ...]) -> None:
        if name in path:
            loop = " -> ".join((*path[path.index(name):], name))
            raise self.fail(f"models.{name}", f"the lineage has a cycle ({loop})")
        for parent in models[name].parents:
            self.check_cycle(models, parent, (*path, name))

    def check_tokenizers(self, exp: Experiment) -> None:
        """Merged parents must share a tokenizer; so must an imported child and its parents."""
        for m in exp.models.values():
            if m.kind == "merge" or (m.kind == "import" and m.parents):
                own = [exp.root(p) for p in m.parents] + ([m.name] if m.kind == "import" else [])
                if len(set(own)) > 1:
                    key = f"models.{m.name}.parents"
                    raise self.fail(key, f"tokenizer mismatch: {' vs '.join(dict.fromkeys(own))} have different "
                                         "tokenizers (a model's tokenizer comes from its base or import)")

    def slices(self, data: dict, corpora: dict[str, Corpus], models: dict[str, Model]) -> dict[str, Slice]:
        self.names(data, "slices.")
        out = {}
        for name, value in data.items():
            where = f"slices.{name}."
            if not isinstance(value, dict):
                raise self.fail(f"slices.{name}", f"expected a table, got {_kind(value)}")
            spec = dict(value)
            corpus = self.resolve(corpora, self.take(spec, "corpus", where, str, required=True), f"{where}corpus")
            part = self.take(spec, "part", where, str, "validation")
            if part not in ("train", "validation"):
                raise self.fail(f"{where}part", f"use train or validation, got {part!r}")
            fields = {k: self.take(spec, k, where, int) for k in ("tokens", "doc_tokens", "min_docs")}
            for key, value in fields.items():
                if value is not None and value < 1:
                    raise self.fail(f"{where}{key}", f"must be at least 1 (got {value})")
            on = self.strings(spec, "models", where, list(models))
            for model in on:
                if model not in models:
                    raise self.fail(f"{where}models", f"unknown model {model!r}")
            self.done(spec, where)
            out[name] = Slice(name, corpus, part, fields["tokens"] or 20_000, fields["doc_tokens"], fields["min_docs"],
                              tuple(on))
        if not out:
            raise self.fail("slices", "no evaluation slices declared; add a [slices.NAME] table with a corpus")
        return out

    def saes(self, data: dict, models: dict[str, Model], slices: dict[str, Slice], seed: int,
             family: str) -> tuple[SAE, ...]:
        from featstore.saes.presets import SAE_PRESETS, TrainSettings

        default = self.table(data, "default", "saes.")
        preset = self.take(default, "preset", "saes.default.", str, family if family in SAE_PRESETS else "tiny")
        init = self.take(default, "init", "saes.default.", str, INITS[0])
        if init not in INITS:
            raise self.fail("saes.default.init", f"use {' or '.join(INITS)}, got {init!r}")
        base = {"seed": seed, **self.settings(default, "saes.default.")}
        self.done(default, "saes.default.")
        for model in data:
            if model not in models:
                raise self.fail(f"saes.{model}", f"unknown model {model!r}; declared models: {', '.join(models)}")
        out = []
        for model in models:
            entries = self.table(data, model, "saes.")
            parents = models[model].parents
            main = self.sae(model, MAIN_SAE, entries.pop(MAIN_SAE, {}), base, preset, slices, init, parents)
            text_seed = TrainSettings(**main.settings).text_seed  # a replica reads the main SAE's text and batch order
            out.append(main)
            for entry, value in entries.items():
                out.append(self.sae(model, entry, value, {**base, "data_seed": text_seed}, preset, slices, init, parents))
                if out[-1].init is None and out[-1].settings == {**main.settings, "data_seed": text_seed}:
                    raise self.fail(f"saes.{model}.{entry}", "trains exactly like the main SAE; give it another seed")
        return tuple(out)

    def sae(self, model: str, entry: str, value: Any, base: dict, preset: str, slices: dict[str, Slice],
            init: str, parents: tuple[str, ...] = ()) -> SAE:
        where = f"saes.{model}.{entry}."
        if not isinstance(value, dict):
            raise self.fail(f"saes.{model}.{entry}", f"expected a table of SAE settings, got {_kind(value)}")
        spec = dict(value)
        path = self.take(spec, "path", where, str)
        if path is not None and not Path(path).expanduser().is_dir():
            raise self.fail(f"{where}path", f"{path} is not a SAELens folder (cfg.json + sae_weights.safetensors)")
        on = self.strings(spec, "slices", where, [])  # default: featstore.pipeline.steps.sae_slices
        for s in on:
            if s not in slices:
                raise self.fail(f"{where}slices", f"unknown slice {s!r}")
        own_preset = self.take(spec, "preset", where, str, preset)
        own = self.entry_init(spec, where, model, entry, parents)
        init_from = SAE(parents[0], MAIN_SAE).id if own == LINEAGE_INIT else None
        fraction = self.bounded(spec, "init_fraction", where, float, 1e-9, 1.0) if init_from else None
        sae = SAE(model, entry, path=path, slices=tuple(on), init=own, init_from=init_from)
        own_init = sae.id if (own or init) == "independent" else None
        settings = self.sae_settings(own_preset, {**base, **self.settings(spec, where)}, where, own_init)
        if init_from:
            settings["tokens"] = max(1, round(settings["tokens"] * (fraction or INIT_FRACTION)))
        self.done(spec, where)
        return replace(sae, settings=settings)

    def entry_init(self, spec: dict, where: str, model: str, entry: str, parents: tuple[str, ...]) -> str | None:
        """An entry's own `init`: independent or shared (a control of [saes.default] init, matched along the
        lineage with the same entry of the other models) or parent (lineage-initialised); None without the key."""
        init = self.take(spec, "init", where, str)
        if init is None:
            return None
        if init not in (*INITS, LINEAGE_INIT):
            raise self.fail(f"{where}init", f"use {', '.join(INITS)} or {LINEAGE_INIT}, got {init!r}")
        if entry == MAIN_SAE:
            raise self.fail(f"{where}init", "the main SAE stands for its model in persistence and follows [saes.default] "
                                            f"init; declare this one as another entry, e.g. [saes.{model}.{init}]")
        if init == LINEAGE_INIT and not parents:
            raise self.fail(f"{where}init", f"model {model!r} has no parent to start from")
        return init

    def settings(self, spec: dict, where: str) -> dict:
        """SAE training fields and architecture hyperparameters (k, l1_coefficient, ...), type-checked."""
        from dataclasses import fields

        from featstore.saes import ARCHITECTURES
        from featstore.saes.presets import TrainSettings

        types = {f.name: int if f.default is None else type(f.default) for f in fields(TrainSettings) if f.name != "options"}
        types.update({f.name: f.metadata["type"] for cls in ARCHITECTURES.values()
                      for f in cls.config_class.hyperparameters()})
        return {key: self.take(spec, key, where, types[key]) for key in [k for k in spec if k in types]}

    def sae_settings(self, preset: str, overrides: dict, where: str, init_name: str | None) -> dict:
        """The preset with `overrides`; with `init_name`, initial weights from that SAE's own seed."""
        from dataclasses import asdict

        from featstore.saes.presets import SAE_PRESETS, independent_init, sae_preset

        if preset not in SAE_PRESETS:
            raise self.fail(f"{where}preset", f"unknown SAE preset {preset!r}; use one of {', '.join(SAE_PRESETS)}")
        try:
            settings = sae_preset(preset, **overrides)
        except FeatstoreError as exc:  # e.g. an architecture's required hyperparameter is missing
            raise self.fail(where.rstrip("."), str(exc)) from None
        return asdict(independent_init(settings, init_name) if init_name else settings)

    def analyses(self, data: dict, models: dict[str, Model], slices: dict[str, Slice], seed: int) -> Analyses:
        from featstore.correlation.statistics import statistic_names

        lineage = tuple((p, m.name) for m in models.values() for p in m.parents)
        edges = self.take(data, "edges", "analyses.", list)
        if edges is None:
            edges = lineage
        else:
            for i, edge in enumerate(edges):
                if not (isinstance(edge, list) and len(edge) == 2 and all(isinstance(e, str) and e in models for e in edge)):
                    raise self.fail(f"analyses.edges[{i}]", f"expected [PARENT, CHILD] of declared models, got {edge!r}")
            edges = tuple(tuple(e) for e in edges)
        stats = self.strings(data, "stats", "analyses.", ["all_tokens"])
        for stat in stats:
            if stat not in statistic_names():
                raise self.fail("analyses.stats", f"unknown statistic {stat!r}; use {', '.join(statistic_names())}")
        fields = {"edges": edges, "stats": tuple(stats)}
        for key, types, low, high in (("r_floor", float, -1, 1), ("ingest_batch", int, 1, math.inf)):
            value = self.bounded(data, key, "analyses.", types, low, high)
            if value is not None:
                fields[key] = value
        explain = self.table(data, "explain", "analyses.")
        for key in ("top", "sample"):
            value = self.bounded(explain, key, "analyses.explain.", int, 1)
            if value is not None:
                fields[f"explain_{key}"] = value
        self.done(explain, "analyses.explain.")
        sweeps = self.table(data, "sweeps", "analyses.")
        fields["sweeps"] = tuple(self.sweep(name, value, models) for name, value in sweeps.items())
        if "causal" in data:
            fields["causal"], fields["causal_slices"] = self.causal(self.table(data, "causal", "analyses."), slices, seed)
        self.done(data, "analyses.")
        return Analyses(**fields)

    def causal(self, spec: dict, slices: dict[str, Slice], seed: int) -> tuple[dict, tuple[str, ...]]:
        """[analyses.causal]: CausalSettings' keys and the slices the checks run on."""
        from featstore.matching.causal import CausalSettings

        where = "analyses.causal."
        on = self.strings(spec, "slices", where, [])
        for name in on:
            if name not in slices:
                raise self.fail(f"{where}slices", f"unknown slice {name!r}; declare it under [slices]")
        return self.settings_of(CausalSettings, spec, where, seed), tuple(on)

    def settings_of(self, cls: type, spec: dict, where: str, seed: int) -> dict:
        """The fields of settings dataclass `cls` that `spec` gives, type-checked, with `seed` defaulting to the
        experiment's; the rest of `spec` must be empty, and `cls` must accept them."""
        from dataclasses import fields

        types = {f.name: type(f.default) for f in fields(cls)}
        settings = {"seed": seed} | {key: self.take(spec, key, where, types[key]) for key in [k for k in spec if k in types]}
        self.done(spec, where)
        try:
            cls(**settings)
        except FeatstoreError as exc:
            raise self.fail(where.rstrip("."), str(exc)) from None
        return settings

    def crosscoders(self, data: dict, corpora: dict[str, Corpus], models: dict[str, Model], slices: dict[str, Slice],
                    saes: tuple[SAE, ...], seed: int) -> tuple[CrosscoderEntry, ...]:
        """[crosscoders.NAME]: parent, child, source, slices and CrosscoderSettings' keys."""
        from featstore.crosscoders.settings import CrosscoderSettings

        self.names(data, "crosscoders.")
        out = []
        for name, value in data.items():
            where = f"crosscoders.{name}."
            if not isinstance(value, dict):
                raise self.fail(f"crosscoders.{name}", f"expected a table, got {_kind(value)}")
            if name in {s.id for s in saes}:
                raise self.fail(f"crosscoders.{name}", "an SAE of the experiment has this id; name the crosscoder otherwise")
            spec = dict(value)
            pair = [self.take(spec, key, where, str, required=True) for key in ("parent", "child")]
            for key, model in zip(("parent", "child"), pair):
                if model not in models:
                    raise self.fail(f"{where}{key}", f"unknown model {model!r}; declared models: {', '.join(models)}")
            if pair[0] == pair[1]:
                raise self.fail(f"{where}child", f"a crosscoder reads two different models, got {pair[0]!r} twice")
            source = self.take(spec, "source", where, str)
            default_slices = [s.name for s in slices.values() if set(pair) <= set(s.models)]
            on = self.strings(spec, "slices", where, default_slices)
            for s in on:
                if s not in slices or not set(pair) <= set(slices[s].models):
                    raise self.fail(f"{where}slices", f"{s!r} is not a slice both {pair[0]} and {pair[1]} are ingested on")
            settings = self.settings_of(CrosscoderSettings, spec, where, seed)
            out.append(CrosscoderEntry(name, pair[0], pair[1], settings,
                                       self.resolve(corpora, source, f"{where}source") if source else None, tuple(on)))
        return tuple(out)

    def sweep(self, name: str, value: Any, models: dict[str, Model]) -> Sweep:
        where = f"analyses.sweeps.{name}."
        if not isinstance(value, dict):
            raise self.fail(f"analyses.sweeps.{name}", f"expected a table, got {_kind(value)}")
        spec = dict(value)
        pair = self.strings(spec, "models", where, required=True)
        if len(pair) != 2 or any(p not in models for p in pair) or pair[0] == pair[1]:
            raise self.fail(f"{where}models", f"a sweep needs two different declared models, got {pair!r}")
        steps = self.take(spec, "steps", where, int, 11)
        if steps < 2:
            raise self.fail(f"{where}steps", f"must be at least 2 (got {steps})")
        method = self.take(spec, "method", where, str, "slerp")
        eval_tokens = self.bounded(spec, "eval_tokens", where, int, 1)
        self.done(spec, where)
        return Sweep(name, (pair[0], pair[1]), steps, method, eval_tokens)


def _lineage_order(models: dict[str, Model]) -> list[tuple[str, Model]]:
    """Models with every parent before its children, otherwise in file order."""
    done: dict[str, Model] = {}

    def visit(name: str) -> None:
        if name not in done:
            for parent in models[name].parents:
                visit(parent)
            done[name] = models[name]

    for name in models:
        visit(name)
    return list(done.items())


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list",
               dict: "a table"}


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def experiment_file_for(path: Path | None, preset: str | None) -> Path | None:
    """The file `featstore run` reads: the one given, a shipped one for `--preset`, else None (the default)."""
    if path is not None and preset is not None:
        raise FeatstoreError("give an experiment file or --preset, not both")
    return experiments_dir() / {"tiny": "paper-tiny.toml", "paper": "paper.toml"}[preset] if preset else path
