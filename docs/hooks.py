"""Pages of the docs site that are written by the code they describe (an mkdocs hook: `hooks:` in mkdocs.yml).

A page asks for a generated part with a marker line; `on_page_markdown` replaces it at build time:

- `<!-- generated: experiment-keys -->`: every key of an experiment file, found by running the parser
  (`featstore.pipeline.experiment.Reader`) on probe experiments and recording each key it reads, with the
  type it checks, the default it falls back to and whether it is required; the SAE training fields from
  `TrainSettings` and the architectures' hyperparameters, which the parser accepts by the same lists.
- `<!-- generated: schema -->`: every table, view and macro with its current columns and types, read
  from a fresh warehouse (`DESCRIBE` of each object, after every migration), joined with the
  descriptions and declared tests of the `schema.yml` files under sql/.
- `<!-- generated: benchmarks -->`: the records of `docs/benchmarks/*.json` that `benchmarks/*.py` write.
- `<!-- generated: real-budgets -->`: the candidates of the budget measurement (docs/benchmarks/real_budgets.json).
- `<!-- generated: real-run -->`: the tables of the real-data run's record (docs/benchmarks/real_run.json).

Anything the two sides disagree on (a column without a description, an object without an entry) is
logged as a warning, which `mkdocs build --strict` turns into a failed build.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import logging
import re
import tempfile
from collections import defaultdict
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.featstore_docs")

_CACHE: dict[str, str] = {}


def on_pre_build(config, **kwargs) -> None:
    _CACHE.clear()  # `mkdocs serve` rebuilds after an edit: generate again from the current code


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, build in GENERATORS.items():
        if marker in markdown:
            if marker not in _CACHE:
                _CACHE[marker] = build()
            markdown = markdown.replace(marker, _CACHE[marker])
    return markdown


# -- shared ------------------------------------------------------------------------------------------


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _code(value) -> str:
    if isinstance(value, Plain):
        return _cell(value)
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f"`{_cell(value)}`"
    if isinstance(value, (list, tuple)):
        return "`[" + ", ".join(_cell(repr(v) if not isinstance(v, str) else f'"{v}"') for v in value) + "]`"
    return f"`{_cell(value)}`"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def field_help(cls) -> dict[str, str]:
    """Field name -> its help: the `help` metadata of `setting(...)` / `hyperparameter(...)`, else the
    comment at the end of the field's line in the class source."""
    found = {}
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    for line in source.splitlines():
        match = re.match(r"^\s{4}(\w+)\s*:[^#]*#\s*(.+?)\s*$", line)
        if match:
            found[match[1]] = match[2]
    for f in dataclasses.fields(cls):
        if f.metadata.get("help"):
            found[f.name] = f.metadata["help"]
    return found


def _field_default(cls, name: str):
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    return None


# -- experiment keys ---------------------------------------------------------------------------------

KIND_PROBES = {"train": "probe_train", "finetune": "probe_finetune", "merge": "probe_merge", "import": "probe_import"}
FILE_STEM = "the file's stem"


class Plain(str):
    """A default written as words, not as a value."""


def probe_experiment(preset: str) -> dict:
    """A parsed TOML file that declares one of everything the parser branches on: a corpus in each form,
    a model of each kind, a second SAE, a slice, an explain table and a sweep."""
    m = KIND_PROBES
    return {
        "family": {"preset": preset},
        "corpora": {"probe_short": "generated:lua?docs=2", "probe_table": {"source": "generated:stories?docs=2"}},
        "models": {
            m["train"]: {"corpus": "probe_short"},
            m["finetune"]: {"parent": m["train"], "corpus": "probe_table"},
            m["merge"]: {"parents": [m["train"], m["finetune"]]},
            m["import"]: {"path": "probe-org/probe-model"},
        },
        "saes": {m["train"]: {"probe_entry": {}}, m["finetune"]: {"probe_lineage": {"init": "parent"}}},
        "slices": {"probe_slice": {"corpus": "probe_short"}},
        "analyses": {"sweeps": {"probe_sweep": {"models": [m["train"], m["finetune"]]}},
                     "causal": {"slices": ["probe_slice"]}},
        "crosscoders": {"probe_crosscoder": {"parent": m["train"], "child": m["finetune"], "source": "probe_short",
                                             "slices": ["probe_slice"]}},
    }


GENERAL = [  # concrete probe names -> the placeholders the page uses
    (re.compile(r"^corpora\.[^.]+(\.|$)"), r"corpora.NAME\1"),
    (re.compile(r"^models\.[^.]+(\.|$)"), r"models.NAME\1"),
    (re.compile(r"^saes\.(?!default\b)[^.]+\.[^.]+(\.|$)"), r"saes.MODEL.ENTRY\1"),
    (re.compile(r"^saes\.(?!default\b)[^.]+$"), "saes.MODEL"),
    (re.compile(r"^slices\.[^.]+(\.|$)"), r"slices.NAME\1"),
    (re.compile(r"^analyses\.sweeps\.[^.]+(\.|$)"), r"analyses.sweeps.NAME\1"),
    (re.compile(r"^crosscoders\.[^.]+(\.|$)"), r"crosscoders.NAME\1"),
]


def _general(where: str) -> str:
    for pattern, placeholder in GENERAL:
        where = pattern.sub(placeholder, where)
    return where


def trace_reader(preset: str) -> list[dict]:
    """Every key the parser reads from the probe experiment, in the order it reads them."""
    from featstore.pipeline import experiment as ex

    calls: list[dict] = []

    class Tracing(ex.Reader):
        def take(self, data, key, where, types, default=None, required=False):
            calls.append({"where": where, "key": key, "types": types if isinstance(types, tuple) else (types,),
                          "default": default, "required": required})
            return super().take(data, key, where, types, default, required)

        def table(self, data, key, where):
            calls.append({"where": where, "key": key, "table": True})
            return super().table(data, key, where)

    Tracing("probe.toml").experiment(probe_experiment(preset), default_name=Plain(FILE_STEM))
    return calls


TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "table"}

# Defaults the parser computes after reading (it passes None, then fills them in), and keys whose value
# lands in no dataclass field of the same name. Each entry must name a key the parser reads: a key that
# is gone fails the build.
NOTES = {
    "name": (None, "the experiment's name (the `preset` column of `pipeline_steps`)"),
    "seed": (None, "seed of every training run, split and sample"),
    "description": (None, "free text"),
    "family.preset": (None, "model-family preset (featstore.models.presets) the shapes and schedules start from"),
    "corpora.NAME.source": (None, ("a file, folder, glob, `python-stdlib`, `generated:<kind>?docs=N`, a hub id, "
                                   "or a mixture `a=0.5+b=0.5`")),
    "models.NAME.corpus": (None, ("train, finetune: the declared corpus (or mixture) it trains on; import: the one "
                                  "it was trained on")),
    "models.NAME.method": (None, "merge method: `slerp` or `linear`"),
    "slices.NAME.corpus": (None, "the declared corpus (or mixture) whose part is tokenized"),
    "analyses.sweeps.NAME.steps": (None, "evenly spaced values of t from 0 to 1"),
    "analyses.sweeps.NAME.method": (None, "merge method"),
    "models.NAME.kind": ("inferred: `parent` → finetune, `parents` → merge, `path` → import, else train",
                         "train, finetune, merge or import"),
    "models.NAME.parent": (None, "the model it is fine-tuned from"),
    "models.NAME.parents": ("none (import)", ("merge: the two models merged, which share a tokenizer; import: "
                                              "lineage edges to declared models")),
    "models.NAME.relation": ("`merge` with two parents, else `finetune`", "the lineage relation of an import"),
    "models.NAME.home": ("the slice of its own corpus, else its first parent's", None),
    "models.NAME.step": (None, "the name of the step that makes it"),
    "tokenizer.source": (None, "`bpe` (trained), `mistral`, a tokenizer folder, a SentencePiece file or a hub id"),
    "tokenizer.corpora": ("every corpus a model of the file trains on", "corpora (names or mixtures) a trained BPE sees"),
    "tokenizer.sample_chars": ("the preset's `tokenizer_chars`", "characters sampled per corpus to train the BPE"),
    "saes.default.preset": (None, "SAE preset (featstore.saes.presets) every SAE starts from"),
    "saes.default.init": (None, ("`independent`: each SAE's initial weights from its own seed, a hash of its `seed` "
                                 "and its id (recorded as its `seed`, with `data_seed` keeping the text and batch "
                                 "order); `shared`: every SAE from `seed` itself")),
    "saes.MODEL.ENTRY.preset": ("`[saes.default] preset`", "SAE preset of this SAE"),
    "saes.MODEL.ENTRY.path": (None, "import this SAELens folder instead of training"),
    "saes.MODEL.ENTRY.init": ("a seed replica of the main SAE",
                              ("`independent` or `shared`: a control of `[saes.default] init`, matched along each edge with the "
                               "parent's entry of the same name; `parent`: start from the parent's trained main SAE (not for `main`)")),
    "saes.MODEL.ENTRY.init_fraction": ("`0.25`", "with `init = \"parent\"`: the share of its `tokens` it trains for"),
    "saes.MODEL.ENTRY.slices": ("every slice the model is on", "slices to ingest it on"),
    "analyses.edges": ("every lineage edge", "pairs `[parent, child]` to correlate"),
    "analyses.stats": (None, "correlation statistics (featstore.correlation.statistics)"),
    "analyses.r_floor": (None, "stored-pair floor of the correlations"),
    "analyses.ingest_batch": (None, "windows per forward pass when ingesting"),
    "analyses.explain.top": (None, "most frequent features explained per SAE"),
    "analyses.explain.sample": (None, "sample of the other features per edge and side (every persisting one is added)"),
    "analyses.sweeps.NAME.models": (None, "the two models merged at each t"),
    "analyses.sweeps.NAME.eval_tokens": ("the family's `eval_tokens`", None),
    "slices.NAME.part": (None, "`validation` or `train` part of the corpus"),
    "slices.NAME.tokens": (None, "tokens in the slice"),
    "slices.NAME.doc_tokens": ("no cap", "at most this many tokens per document, so one long file cannot fill a slice"),
    "slices.NAME.min_docs": ("none", "fail with fewer documents"),
    "slices.NAME.models": (None, "models ingested on it"),
    "analyses.causal.slices": ("each edge's child's home slice", "slices the causal checks run on (both SAEs correlated there)"),
    "crosscoders.NAME.parent": (None, "the model whose decoder is index 0 (`parent_only` latents write to it alone)"),
    "crosscoders.NAME.child": (None, "the model whose decoder is index 1 (`child_only` latents write to it alone)"),
    "crosscoders.NAME.source": ("the two models' training corpora, half each", "the declared corpus (or mixture) it trains on"),
    "crosscoders.NAME.slices": ("every slice both models are ingested on", "slices its activations are stored on"),
}


def _section_classes():
    from featstore.models.presets import ModelPreset, Schedule
    from featstore.pipeline import experiment as ex

    return {"": (ex.Experiment, ""), "family.": (ModelPreset, ""), "family.base.": (Schedule, ""),
            "family.finetune.": (Schedule, ""), "tokenizer.": (ModelPreset, ""), "corpora.NAME.": (ex.Corpus, ""),
            "models.NAME.": (ex.Model, ""), "saes.default.": (ex.SAE, ""), "saes.MODEL.ENTRY.": (ex.SAE, ""),
            "slices.NAME.": (ex.Slice, ""), "analyses.": (ex.Analyses, ""), "analyses.explain.": (ex.Analyses, "explain_"),
            "analyses.causal.": (ex.Analyses, "causal_"),
            "analyses.sweeps.NAME.": (ex.Sweep, ""), "crosscoders.NAME.": (ex.CrosscoderEntry, "")}


def _preset_default(section: str, key: str, presets: dict) -> dict | None:
    """What a key left out of [family] / [family.base] / [tokenizer] takes: the family preset's value."""
    source = {"family.": lambda p: p, "tokenizer.": lambda p: p, "family.base.": lambda p: p.base,
              "family.finetune.": lambda p: p.finetune}.get(section)
    if source is None or not all(hasattr(source(p), key) for p in presets.values()):
        return None
    return {name: getattr(source(p), key) for name, p in presets.items()}


def _by(values: dict, label: str) -> str:
    distinct = {repr(v) for v in values.values()}
    if len(distinct) == 1:
        return _code(next(iter(values.values())))
    return "; ".join(f"{name}: {_code(v)}" for name, v in values.items()) + f" (by {label})"


def experiment_keys() -> str:
    from featstore.models.presets import MODEL_PRESETS
    from featstore.pipeline import experiment as ex

    missing = set(ex.KINDS) - set(KIND_PROBES)
    if missing:
        log.warning("experiment keys: the probe declares no model of kind %s; add it to KIND_PROBES in docs/hooks.py",
                    ", ".join(sorted(missing)))
    kind_of = {name: kind for kind, name in KIND_PROBES.items()}
    probe_names = set(kind_of) | {"probe_short", "probe_table", "probe_entry", "probe_lineage", "probe_slice", "probe_sweep",
                                  "probe_crosscoder", "main"}
    all_models = list(probe_experiment("tiny")["models"])

    keys: dict[str, dict] = {}
    sections: dict[str, list[str]] = {}
    for preset in MODEL_PRESETS:
        for call in trace_reader(preset):
            section = _general(call["where"])
            if call.get("table"):
                sections.setdefault(_general(call["where"] + call["key"]) + ".", [])
                continue
            sections.setdefault(section, [])
            full = section + call["key"]
            entry = keys.setdefault(full, {"section": section, "key": call["key"], "types": call["types"],
                                           "required": call["required"], "defaults": {}, "kinds": []})
            if full not in sections[section]:
                sections[section].append(full)
            kind = kind_of.get(call["where"].split(".")[1]) if section == "models.NAME." else None
            if kind and kind not in entry["kinds"]:
                entry["kinds"].append(kind)
            default = call["default"]
            if isinstance(default, str) and not isinstance(default, Plain):
                for name in probe_names:
                    default = re.sub(rf"\b{name}\b", "NAME", default)
            if isinstance(default, list) and default == all_models:
                default = Plain("every declared model")
            entry["defaults"][(preset, kind)] = default

    for key in NOTES:
        if key not in keys:
            log.warning("experiment keys: docs/hooks.py NOTES describes %s, which the parser no longer reads", key)

    classes = _section_classes()
    out = []
    for section, names in sections.items():
        if not names:
            continue
        cls, prefix = classes.get(section, (None, ""))
        helps = field_help(cls) if cls else {}
        title = f"`[{section.rstrip('.')}]`" if section else "Top level"
        has_kinds = any(keys[n]["kinds"] for n in names)
        rows = []
        for name in names:
            e = keys[name]
            note_default, note = NOTES.get(name, (None, None))
            if name.startswith("models.NAME.") and e["key"] in ex.SCHEDULE_KEYS:
                note_default = note_default or "`[family.base]` (train), `[family.finetune]` (finetune)"
            given = {k: v for k, v in e["defaults"].items() if v is not None}
            if note_default:
                default = note_default
            elif e["required"]:
                default = "*required*"
            elif given and len(given) == len(e["defaults"]):
                by_preset = {p: v for (p, _), v in given.items()}
                by_kind = {k: v for (_, k), v in given.items() if k}
                if len({repr(v) for v in given.values()}) == 1:
                    default = _code(next(iter(given.values())))
                elif len({repr(v) for v in by_preset.values()}) > 1:
                    default = _by(by_preset, "`[family] preset`")
                else:
                    default = _by(by_kind, "kind")
            else:
                from_preset = _preset_default(section, e["key"], MODEL_PRESETS)
                from_class = _field_default(cls, prefix + e["key"]) if cls else None
                if from_preset is not None:
                    default = _by(from_preset, "`[family] preset`")
                elif from_class is not None:
                    default = _code(list(from_class) if isinstance(from_class, tuple) else from_class)
                else:
                    default = "—"
            meaning = note or helps.get(prefix + e["key"]) or ""
            row = [f"`{e['key']}`", " or ".join(TYPE_NAMES.get(t, t.__name__) for t in e["types"]), default]
            if has_kinds:
                row.append(", ".join(e["kinds"]))
            rows.append(row + [_cell(meaning)])
        header = ["key", "type", "default", *(["kinds"] if has_kinds else []), "meaning"]
        out.append(f"### {title}\n\n{_table(header, rows)}\n")
    out.append(sae_settings())
    out.append(settings_table("featstore.crosscoders.settings", "CrosscoderSettings", "Crosscoder training fields",
                              "`[crosscoders.NAME]`", "`featstore crosscoder train`"))
    out.append(settings_table("featstore.matching.causal", "CausalSettings", "Causal check fields", "`[analyses.causal]`",
                              "`featstore causal`"))
    return "\n".join(out)


def sae_settings() -> str:
    """The SAE training fields the parser accepts in [saes.default] and [saes.MODEL.ENTRY]."""
    from featstore.saes import ARCHITECTURES
    from featstore.saes.presets import SAE_PRESETS, TrainSettings

    helps = field_help(TrainSettings)
    rows = []
    for f in dataclasses.fields(TrainSettings):
        if f.name == "options":
            continue
        kind = int if f.default is None else type(f.default)
        defaults = [_code(getattr(p, f.name)) for p in SAE_PRESETS.values()]
        rows.append([f"`{f.name}`", TYPE_NAMES.get(kind, kind.__name__), *defaults, _cell(helps.get(f.name, ""))])
    training = _table(["key", "type", *(f"`{name}` preset" for name in SAE_PRESETS), "meaning"], rows)
    rows = []
    for arch, cls in ARCHITECTURES.items():
        for f in cls.config_class.hyperparameters():
            default = "*required*" if f.default is None else _code(f.default)
            rows.append([f"`{f.name}`", f"`{arch}`", TYPE_NAMES.get(f.metadata["type"], str(f.metadata["type"])), default,
                         _cell(f.metadata["help"])])
    hyper = _table(["key", "architecture", "type", "default", "meaning"], rows)
    return ("### SAE training fields\n\nAccepted in `[saes.default]` and `[saes.MODEL.ENTRY]` beside the keys above: "
            "every field of `featstore.saes.presets.TrainSettings` (its defaults per SAE preset below; `seed` "
            "defaults to the experiment's `seed`; with `init = \"independent\"` the SAE's initial weights come from a "
            "seed derived from it and the SAE's id) ...\n\n" + training +
            "\n\n... and the hyperparameters of every architecture in `featstore.saes.architectures.ARCHITECTURES`:\n\n"
            + hyper + "\n")


def settings_table(module: str, name: str, title: str, where: str, command: str) -> str:
    """The fields of a settings dataclass (`module`.`name`) the parser accepts in `where`."""
    cls = getattr(importlib.import_module(module), name)
    helps = field_help(cls)
    rows = [[f"`{f.name}`", TYPE_NAMES.get(type(f.default), type(f.default).__name__), _code(f.default), _cell(helps.get(f.name, ""))]
            for f in dataclasses.fields(cls)]
    return (f"### {title}\n\nAccepted in {where} beside the keys above: every field of `{module}.{name}` (`seed` "
            f"defaults to the experiment's `seed`), the options of {command}:\n\n"
            + _table(["key", "type", "default", "meaning"], rows) + "\n")


# -- warehouse schema --------------------------------------------------------------------------------

AREA_TITLES = {"tables": "Tables"}


def _signature(text: str, name: str) -> str | None:
    """`name(a, b := 1)` as a macro's file declares it (parentheses matched, so list defaults survive)."""
    match = re.search(rf"(?is)create\s+or\s+replace\s+macro\s+{re.escape(name)}\s*\(", text)
    if not match:
        return None
    depth, i = 1, match.end()
    while i < len(text) and depth:
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        i += 1
    params = re.sub(r"\s+", " ", text[match.end(): i - 1]).strip()
    return f"{name}({params})"


def _tests(tests) -> str:
    out = []
    for test in tests or []:
        if isinstance(test, str):
            out.append(test)
            continue
        kind, arg = next(iter(test.items()))
        if kind == "accepted_values":
            out.append("accepted_values: " + ", ".join(str(v) for v in arg["values"]))
        elif kind == "relationships":
            out.append(f"relationships: {arg['to']}.{arg['field']}")
        else:
            out.append(f"{kind}: {', '.join(arg) if isinstance(arg, list) else arg}")
    return "; ".join(_cell(t) for t in out)


def schema_reference() -> str:
    from featstore.warehouse import Warehouse, schema, sql_dir, sql_files

    docs = schema.load_docs(sql_dir())
    files: dict[str, list[str]] = defaultdict(list)
    texts: dict[str, str] = {}
    for path, text in sql_files():
        f = schema.SqlFile(path, text)
        files[f.object].append(path)
        texts[f.object] = texts.get(f.object, "") + "\n" + text
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(Path(tmp) / "wh")
        wh.create()
        tables = set(wh.query("SELECT table_name FROM duckdb_tables() WHERE NOT internal AND NOT temporary")
                     .column(0).to_pylist()) - {"schema_migrations"}
        views = set(wh.query("SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary")
                    .column(0).to_pylist())
        macros = {r["function_name"]: r["function_type"] for r in wh.query(
            "SELECT function_name, function_type FROM duckdb_functions() WHERE function_type IN ('macro', 'table_macro')"
            " AND NOT internal AND schema_name = 'main'").to_pylist()}
        described = {}
        with wh.connect(read_only=True) as con:
            for name, entry in docs.items():
                try:
                    described[name] = con.execute(f"DESCRIBE {schema.relation(entry)}").fetchall()
                except Exception as exc:  # noqa: BLE001 - reported, and strict mode fails the build
                    log.warning("schema: DESCRIBE of %s failed on a fresh warehouse: %s", name, exc)
                    described[name] = []
    for name in sorted((tables | views | set(macros)) - set(docs)):
        log.warning("schema: %s is in a fresh warehouse but in no sql/**/schema.yml", name)

    by_area: dict[str, list[str]] = defaultdict(list)
    for name, entry in docs.items():
        by_area[entry["area"]].append(name)
    areas = ["tables"] + sorted(a for a in by_area if a != "tables")
    out = [(f"{len(tables)} tables, {len(views)} views and {len(macros)} macros, from a warehouse created by this "
            "version of featstore.\n")]
    out.append("| area | objects |\n|---|---|")
    for area in areas:
        links = ", ".join(f"[`{n}`](#{n})" for n in sorted(by_area[area]))
        out.append(f"| [{AREA_TITLES.get(area, area + '/')}](#{'tables' if area == 'tables' else 'area-' + area}) | {links} |")
    out.append("")
    for area in areas:
        anchor = "tables" if area == "tables" else f"area-{area}"
        out.append(f"## {AREA_TITLES.get(area, f'`{area}/`')} {{#{anchor}}}\n")
        for name in sorted(by_area[area]):
            out.append(_object(name, docs[name], described.get(name, []), tables, views, macros, files, texts))
    return "\n".join(out)


def _object(name, entry, described, tables, views, macros, files, texts) -> str:
    kinds = []
    if name in tables:
        kinds.append("table")
    if name in macros:
        kinds.append("table macro" if macros[name] == "table_macro" else "macro")
    if name in views:
        kinds.append("view" + (" (the macro at its defaults)" if name in macros else ""))
    paths = [f"`sql/{p}`" for p in files.get(name, [])]
    if not paths:
        origin = "written by `featstore.warehouse` whenever a partition is committed"
    elif len(paths) == 1:
        origin = paths[0]
    else:  # a table changed by later migrations: the columns below are the ones after all of them
        origin = f"created by {paths[0]}, changed by {', '.join(paths[1:])}"
    lines = [f"### `{name}` {{#{name}}}\n", f"*{', '.join(kinds) or 'object'}* · {origin}\n",
             " ".join(str(entry.get("description", "")).split()) + "\n"]
    if name in macros:
        signature = _signature(texts.get(name, ""), name)
        if signature:
            lines.append(f"```sql\n{signature}\n```\n")
    documented = {c["name"]: c for c in entry.get("columns", [])}
    real = [(row[0], row[1]) for row in described]
    for column, _ in real:
        if column not in documented:
            log.warning("schema: %s.%s has no entry in sql/%s/schema.yml", name, column, entry["area"])
    for column in documented:
        if real and column not in dict(real):
            log.warning("schema: sql/%s/schema.yml documents %s.%s, which a fresh warehouse lacks", entry["area"], name, column)
    if real:
        rows = [[f"`{column}`", f"`{_cell(dtype)}`", _cell(documented.get(column, {}).get("description", "")),
                 _tests(documented.get(column, {}).get("tests"))] for column, dtype in real]
        lines.append(_table(["column", "type", "description", "tests"], rows) + "\n")
    object_tests = _tests(entry.get("tests"))
    if object_tests:
        lines.append(f"Tests on the whole object: {object_tests}.\n")
    if entry.get("example"):
        lines.append(f"Example (from schema.yml, run on the test warehouse): `{_cell(entry['example'])}`\n")
    return "\n".join(lines)


# -- benchmarks: one section per record in docs/benchmarks/*.json ---------------------------------------

def _load_records() -> list[dict]:
    """`benchmarks/record.py`'s own reader of docs/benchmarks/*.json (the benchmarks are scripts, not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "record.py"
    spec = importlib.util.spec_from_file_location("featstore_benchmark_record", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_records()


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return _cell(value)


def _provenance(r: dict) -> str:
    """The command, time, machine, load average, versions and commit of a record, as two lines."""
    m, v, c = r["machine"], r["versions"], r.get("commit") or {}
    load = " → ".join(" ".join(f"{x:.2f}" for x in r["load_average"][k]) for k in ("start", "end"))
    commit = f"`{c['sha'][:12]}`" + (" (uncommitted changes)" if c.get("dirty") else "") if c.get("sha") else "—"
    return (f"`{_cell(r['command'])}`, {r['timestamp'][:16].replace('T', ' ')} UTC\n\n"
            f"{m['cpu_count']} cores, {m.get('memory_gb', '?')} GB, GPU {m.get('gpu') or 'none'}; load average {load}; "
            f"torch {v.get('torch')}, duckdb {v.get('duckdb')}; commit {commit}\n")


def _record_tables(r: dict, level: str = "###") -> list[str]:
    return [f"{level} {title}\n\n" + _table(list(rows[0]), [[_number(v) for v in row.values()] for row in rows]) + "\n"
            for title, rows in r.get("tables", {}).items() if rows]


def benchmark_records() -> str:
    """Each full-size record's command, machine, versions and commit, its ratios and its figures."""
    records = _load_records()
    if not records:
        return "No full-size record yet: run a script of `benchmarks/` without `--smoke` to write one."
    out = []
    for r in records:
        out += [f"## `{r['name']}`\n", _provenance(r),
                _table(["ratio", "value"], [[f"`{k}`", _number(x)] for k, x in r["ratios"].items()]) + "\n",
                _table(["figure", "value"], [[f"`{k}`", _number(x)] for k, x in r["figures"].items()]) + "\n",
                *_record_tables(r)]
    return "\n".join(out)


OWN_DOMAINS = (("base", "python"), ("base", "english"), ("lua", "lua"), ("english", "english"))


def real_budget_table() -> str:
    """One row per candidate of benchmarks/real_budgets.py: its models' accuracy (bits per byte) on their own
    domains and the seconds of training."""
    record = next((r for r in _load_records() if r["name"] == "real_budgets"), None)
    if record is None:
        return "No record of the budget measurement yet: run `python benchmarks/real_budgets.py`."
    f = record["figures"]
    candidates = [k.removesuffix("_reference_tokens_per_s") for k in f if k.endswith("_reference_tokens_per_s")]
    rows = []
    for c in candidates:
        cells = [f"{f[f'{c}_{m}_{d}_val_accuracy']:.3f} ({f[f'{c}_{m}_{d}_val_bits_per_byte']:.2f})" for m, d in OWN_DOMAINS]
        seconds = sum(f[f"{c}_{m}_seconds"] for m in ("base", "lua", "english"))
        rows.append([f"`{c}`", f"{f[f'{c}_base_tokens']:,}", f"{f[f'{c}_lua_tokens']:,}", *cells, f"{seconds:,.0f}"])
    header = ["candidate", "base tokens", "fine-tune tokens", *(f"{m} on {d}" for m, d in OWN_DOMAINS), "training s"]
    return "\n".join([_table(header, rows), "", _provenance(record)])


def real_run_tables() -> str:
    """The tables of the real-data run's record (benchmarks/real_run.py), under the page's own headings."""
    record = next((r for r in _load_records() if r["name"] == "real_run"), None)
    if record is None:
        return "No record of the real-data run yet: `python benchmarks/real_run.py --warehouse warehouse-real` writes it."
    return "\n".join(["The run these tables come from:\n", _provenance(r=record), *_record_tables(record, "####")])


def gpu_records() -> str:
    """The records in docs/benchmarks/ that a GPU machine wrote, or a line saying there is none yet."""
    records = [r for r in _load_records() if r["machine"].get("gpu")]
    if not records:
        return ("No record in `docs/benchmarks/` was written on a GPU yet: every figure on the benchmarks page is "
                "from a CPU. Run `benchmarks/gpu/paper.sh` on a GPU machine and commit its records to fill this.")
    rows = [[f"`{r['name']}`", _cell(r["machine"]["gpu"]), r["timestamp"][:10]]
            for r in records]
    return _table(["record (on the [benchmarks page](benchmarks/index.md))", "GPU", "date"], rows)


GENERATORS = {
    "<!-- generated: experiment-keys -->": experiment_keys,
    "<!-- generated: schema -->": schema_reference,
    "<!-- generated: benchmarks -->": benchmark_records,
    "<!-- generated: gpu-records -->": gpu_records,
    "<!-- generated: real-run -->": real_run_tables,
    "<!-- generated: real-budgets -->": real_budget_table,
}
