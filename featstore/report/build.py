"""`featstore report`: one HTML page with the paper's figures, drawn from the warehouse's views.

Every number on the page comes from a view or macro in sql/ (persistence, merge sweep, scores,
feature families, top contexts), so what the page shows a user can re-query in the DuckDB shell.
Sections whose data does not exist yet say which command produces it instead of failing.
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
from matplotlib.figure import Figure

from featstore.errors import FeatstoreError
from featstore.report.figures import (
    flow_figure,
    score_histogram_figure,
    sweep_figure,
    threshold_figure,
)
from featstore.report.markup import (
    Markup,
    feature_page_path,
    highlighted_contexts,
    html_table,
    page,
)
from featstore.warehouse import Warehouse, queries
from featstore.warehouse.queries import run


def _image(fig: Figure, folder: Path, name: str, alt: str) -> str:
    fig.savefig(folder / name, dpi=110)
    return f"<img src='{name}' alt='{html.escape(alt)}'>"


# -- sections: query the warehouse, draw, return HTML ---------------------------------------------


def _table(db: duckdb.DuckDBPyConnection, name: str, **params) -> pa.Table:
    """A named query's result (sql/queries/report/) as an Arrow table, for html_table; a failure is a
    FeatstoreError naming the query."""
    return queries.arrow(db, name, **params)


def _rows(db: duckdb.DuckDBPyConnection, name: str, **params) -> list[dict]:
    """A named query's rows through Arrow (so each cell has Arrow's Python type)."""
    return _table(db, name, **params).to_pylist()


def _named_rows(db: duckdb.DuckDBPyConnection, name: str, **params) -> list[dict]:
    """Rows of a named query (sql/queries/report/)."""
    try:
        return queries.rows(run(db, name, **params))
    except duckdb.Error as exc:
        raise FeatstoreError(f"report query failed: {str(exc).splitlines()[0]}") from exc


def _defined(db: duckdb.DuckDBPyConnection, *names: str) -> bool:
    """Whether the views/macros a section reads exist (an older warehouse or schema may lack them)."""
    [(found,)] = run(db, "report/defined", names=list(names)).fetchall()
    return found == len(names)


def _undefined(*names: str) -> str:
    return f"<p class='empty'>This warehouse's schema has no {', '.join(names)}; open it with a featstore that defines them.</p>"


def _missing(what: str, command: str) -> str:
    return f"<p class='empty'>No {what} in this warehouse yet: run <code>{html.escape(command)}</code>.</p>"


def per_domain_columns(rows: Sequence[dict]) -> list[dict]:
    """Rows with their dict-valued cells spread into one column per key (`val_loss lua`, ...)."""
    out = []
    for row in rows:
        flat = {}
        for name, value in row.items():
            value = json.loads(value) if isinstance(value, str) and value.startswith("{") else value
            if isinstance(value, dict):
                flat.update({f"{name} {key}": v for key, v in sorted(value.items())})
            else:
                flat[name] = value
        out.append(flat)
    keys = list(dict.fromkeys(k for row in out for k in row))
    return [{k: row.get(k) for k in keys} for row in out]


def overview_section(db: duckdb.DuckDBPyConnection, folder: Path) -> str:
    # the report step is running while it writes this page: leave its own row out
    steps = _table(db, "report/steps")
    models = per_domain_columns(_rows(db, "report/models"))
    saes = _table(db, "report/saes")
    if not models:
        return _missing("models", "featstore run")
    parts = ["<h3>Models (validation loss and next-token accuracy per domain)</h3>", html_table(models),
             "<h3>Primary SAEs</h3>", html_table(saes)]
    if steps.num_rows:
        total = sum(s or 0 for s in steps.column("seconds").to_pylist())
        parts += [f"<h3>Pipeline steps (last execution of each; {total:.0f} s in all)</h3>", html_table(steps)]
    return "".join(parts)


def flow_section(db: duckdb.DuckDBPyConnection, folder: Path) -> str:
    if not _defined(db, "persistence_summary", "merge_inheritance"):
        return _undefined("persistence_summary", "merge_inheritance")
    panels = figure2_panels(db)
    if not panels:
        return _missing("correlations between parent and child SAEs", "featstore correlate PARENT_SAE CHILD_SAE")
    parts = ["<p>Arrows are lineage edges, labelled with the share of the parent's live features (those that fire) "
             "whose best match in the child correlates at r ≥ 0.8 over the same tokens: the paper's Figure 2. Arrow "
             "width follows that share; a model's box counts its live features and those with no match in any "
             "parent (emerged), and gives its seed-noise floor: the share of its features persisting into an SAE "
             "that differs only in its seed (<code>seed_floor</code>, measured on the model's own slice), which the "
             "edge label compares the share with. One panel per evaluation slice.</p>"]
    for corpus, (nodes, arrows) in panels.items():
        parts.append(f"<h3>{html.escape(corpus)}</h3>")
        parts.append(_image(flow_figure(nodes, arrows), folder, f"figure2_flow_{corpus}.png", f"feature flow on {corpus}"))
    return "".join(parts) + html_table(_table(db, "report/persistence"))


def figure2_panels(db: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per evaluation slice, Figure 2's boxes and arrows: every model and lineage edge correlated there."""
    edges = _rows(db, "report/persistence_edges")
    models = [r["name"] for r in _rows(db, "report/model_names")]
    merged = _rows(db, "report/emerged_in_merges")
    panels = {}
    for corpus in sorted({e["corpus"] for e in edges}):
        emerged_in_merge = {m["child"]: m["n"] for m in merged if m["corpus"] == corpus}
        panels[corpus] = flow_data(models, [e for e in edges if e["corpus"] == corpus], emerged_in_merge)
    return panels


def flow_data(models: list[str], edges: list[dict], emerged_in_merge: dict[str, int]) -> tuple[list[dict], list[dict]]:
    """Boxes and arrows of Figure 2 from persistence_summary rows of one corpus."""
    live, emerged, floor = {}, {}, {}
    for e in edges:
        live[e["parent"]] = e["parent_persist"] + e["parent_disappear"]
        live[e["child"]] = e["child_persist"] + e["child_emerge"]
        emerged[e["child"]] = emerged_in_merge.get(e["child"], e["child_emerge"])
        floor[e["parent"]], floor[e["child"]] = e.get("parent_floor"), e.get("child_floor")
    nodes = [{"name": m, "n_features": live[m], "n_emerged": emerged.get(m), "floor": floor.get(m)} for m in models if m in live]
    arrows = [{"parent": e["parent"], "child": e["child"], "n_parent": e["parent_persist"] + e["parent_disappear"],
               "n_persist": e["parent_persist"], "share_persist": e["parent_share_persisting"],
               "share_vs_floor": e.get("parent_share_vs_floor")} for e in edges]
    return nodes, arrows


def threshold_section(db: duckdb.DuckDBPyConnection, folder: Path) -> str:
    if not _defined(db, "persistence_curve"):
        return _undefined("persistence_curve")
    rows = _named_rows(db, "report/persistence_curve")
    if not rows:
        return _missing("correlations", "featstore correlate PARENT_SAE CHILD_SAE")
    floors = _named_rows(db, "report/seed_floor_curves") if _defined(db, "seed_floor") else []
    parts = ["<p>Share of parent features persisting as the threshold varies (view <code>persistence_curve</code>; "
             "the macro <code>persistence(threshold := …)</code> re-reads the stored correlations, nothing is recomputed). "
             "Dashed: each parent's seed-noise floor at the same threshold (view <code>seed_floor</code>).</p>"]
    for corpus in sorted({r["corpus"] for r in rows}):
        on_corpus = [r for r in rows if r["corpus"] == corpus]
        parts.append(f"<h3>{html.escape(corpus)}</h3>")
        figure = threshold_figure(on_corpus, floor_curves(floors, {r["parent"] for r in on_corpus}, corpus))
        parts.append(_image(figure, folder, f"persistence_curve_{corpus}.png", f"persistence curve on {corpus}"))
    return "".join(parts)


def floor_curves(floors: list[dict], models: set[str], corpus: str) -> list[dict]:
    """Each model's floor curve, measured on `corpus` when it was, else on the first corpus it was measured on."""
    measured = defaultdict(set)
    for row in floors:
        measured[row["model"]].add(row["corpus"])
    chosen = {m: corpus if corpus in c else min(c) for m, c in measured.items() if m in models}
    return [row for row in floors if chosen.get(row["model"]) == row["corpus"]]


def agreement_section(db: duckdb.DuckDBPyConnection, folder: Path, per_edge: int = 2) -> str:
    if not _defined(db, "edge_agreement", "method_disagreements"):
        return _undefined("edge_agreement", "method_disagreements")
    agreement = _table(db, "report/agreement")
    if not agreement.num_rows:
        return _missing("match evidence beside the correlations", "featstore match PARENT_SAE CHILD_SAE --corpus SLICE")
    return ("<p>Per edge (and seed pair) and slice: how many of the parent's live features each match method calls "
            "persisting at its default threshold (<code>match_methods</code>: r ≥ 0.8, cosine ≥ 0.7, Jaccard ≥ 0.5, "
            "crosscoder ≥ 0.5, causal ≥ 0.5 over the pairs it checked), how many both do and with the same partner; best match, all pairs with "
            "<code>all_tokens</code> (<code>method_agreement(policy := …)</code> for the others).</p>" + html_table(agreement)
            + "<h3>Where activation r and decoder cosine disagree most</h3>"
            "<p>Parent features one method calls persisting and the other not, farthest apart "
            "(<code>method_disagreements</code>), with their top tokens on the slice; a feature links to its page "
            "where <code>featstore report --features N</code> wrote one.</p>"
            + disagreement_table(db, folder, per_edge, "decoder_cosine") + analysis_parts(db, folder, per_edge))


def disagreement_table(db: duckdb.DuckDBPyConnection, folder: Path, per_edge: int, method: str) -> str:
    """Where activation r and `method` disagree most per edge and slice, each feature and partner linked to
    its page when the report folder has one."""
    rows = _named_rows(db, "report/disagreements", n=per_edge, method=method)
    for row in rows:
        parent_sae, child_sae = row.pop("parent_sae"), row.pop("child_sae")
        for column, sae in (("feature", parent_sae), ("match_a", child_sae), ("match_b", child_sae)):
            if row[column] is not None:
                row[column] = Markup(_linked(folder, sae, row[column], str(row[column])))
    return html_table(rows)


def _linked(folder: Path, sae: str, feature: int, label: str) -> str:
    """`label` (escaped), linked to the feature's page when one was written into `folder`."""
    label = html.escape(label)
    path = feature_page_path(sae, feature)
    return f"<a href='{path}'>{label}</a>" if (folder / path).exists() else label


# The analyses beyond correlation, each shown only where the warehouse has it: (summary query, title, what it
# shows, the match method whose disagreements with activation r follow it, or None).
ANALYSES = (
    ("report/crosscoders", "Crosscoders",
     ("Each crosscoder's latents by relative decoder norm (shared 0.4–0.6, parent-only ≤ 0.1, child-only ≥ 0.9), exclusive "
      "latents Latent Scaling flags as artefacts, and its fraction of variance unexplained per model (view "
      "<code>crosscoder_summary</code>)."), "crosscoder"),
    ("report/causal", "Causal checks",
     ("Each edge's best matches (<code>top</code>) and a sample of the rest, each pair's features ablated in their models "
      "on the same tokens: how many change the next-token distribution alike (effect cosine ≥ 0.5), how many hold a "
      "feature that barely acts (KL under 1e-4 nats), the median scores, and the correlation of match score with causal "
      "score (view <code>causal_summary</code>)."), "causal"),
    ("report/drift", "Lineage-initialised SAEs",
     ("SAEs of a child started from its parent's trained SAE: of the parent SAE's live features, how many persist by "
      "drift (decoder cosine ≥ 0.9 with the vector they started as, still firing), moved (cosine < 0.5) or fell silent, "
      "the median cosine and firing-rate ratio, and beside them how many persist by correlation into the child's "
      "independent SAE (r ≥ 0.8) and by both (view <code>drift_summary</code>; per feature <code>lineage_drift</code>)."),
     None),
    ("report/init_control", "The initialisation control",
     ("Per edge, slice and method compared under at least two initialisations: the share of the parent SAE's live "
      "features each method calls persisting when the two SAEs start from independent random weights, from the same "
      "random weights (shared), or the child's from the parent's trained SAE (lineage), beside the parent model's seed "
      "floor under the same method (view <code>init_control</code>)."), None),
)


def analysis_parts(db: duckdb.DuckDBPyConnection, folder: Path, per_edge: int) -> str:
    """Each analysis of ANALYSES the warehouse holds: its summary, and where its method and activation r disagree most."""
    parts = []
    for query, title, intro, method in ANALYSES:
        summary = _table(db, query)
        if not summary.num_rows:
            continue
        parts.append(f"<h3>{title}</h3><p>{intro}</p>" + html_table(summary))
        if method is not None:
            parts.append(f"<h3>Where activation r and the {method} method disagree most</h3>"
                         + disagreement_table(db, folder, per_edge, method))
    return "".join(parts)


def sweep_section(db: duckdb.DuckDBPyConnection, folder: Path) -> str:
    rows = _rows(db, "report/merge_sweep")
    if not rows:
        return _missing("merge sweep", "featstore merge-sweep A B")
    parts = []
    for a, b, method in sorted({(r["model_a"], r["model_b"], r["method"]) for r in rows}):
        pair = [r for r in rows if (r["model_a"], r["model_b"], r["method"]) == (a, b, method)]
        base = next((r["evaluated"] for r in pair if r["evaluated"] != "merge"), "base")
        merges = [(m["child"], m["merge_t"]) for m in _rows(db, "report/merges_of_pair", model_a=a, model_b=b, method=method)]
        parts.append(f"<p>{html.escape(method)} merges of <b>{html.escape(a)}</b> (t = 0) and <b>{html.escape(b)}</b> (t = 1), "
                     f"dashed: {html.escape(base)} (the paper's Figure 5).</p>")
        parts.append(_image(sweep_figure(pair, merges), folder, f"figure5_sweep_{a}_{b}_{method}.png", "merge sweep"))
    return "".join(parts)


def scores_section(db: duckdb.DuckDBPyConnection, folder: Path) -> str:
    rows = _named_rows(db, "report/self_scores")
    if not rows:
        return _missing("explanation scores", "featstore score SAE")
    groups = defaultdict(list)
    for r in rows:
        groups[f"{r['model']} on {r['corpus']}"].append(r["score"])
    parts = [_image(score_histogram_figure(groups, "all explained features"), folder, "figure6_scores.png", "score histograms")]
    split = _named_rows(db, "report/figure6_parent") if _defined(db, "figure6") else []
    for parent, child, corpus in sorted({(r["parent"], r["child"], r["corpus"]) for r in split}):
        groups = defaultdict(list)
        for r in split:
            if (r["parent"], r["child"], r["corpus"]) == (parent, child, corpus):
                groups[f"{parent} features that {'persist' if r['persisting'] else 'disappear'}"].extend(r["scores"])
        parts.append(_image(score_histogram_figure(groups, f"{parent} → {child} on {corpus}"), folder,
                            f"figure6_{parent}_{child}_{corpus}.png", f"scores of {parent} features by persistence"))
    return "".join(parts) + html_table(_table(db, "report/score_summary"))


def showcase_section(db: duckdb.DuckDBPyConnection, folder: Path, per_edge: int = 2, width: int = 8) -> str:
    pairs = _rows(db, "report/showcase", n=per_edge)
    if not pairs:
        return _missing("feature matches", "featstore correlate PARENT_SAE CHILD_SAE")
    blocks = ["<p>The strongest matches of each edge on each slice, among parent features that fire at least 10 "
              "times there: the parent feature's top activations on that slice (left) and its best match in the "
              "child (right), each token shaded by the feature's activation (the paper's Figures 3–4).</p>"]
    for p in pairs:
        left = highlighted_contexts(_rows(db, "report/top_contexts", sae=p["parent_sae"], feature=p["parent_feature"],
                                          corpus=p["corpus"], width=width))
        right = highlighted_contexts(_rows(db, "report/top_contexts", sae=p["child_sae"], feature=p["child_feature"],
                                           corpus=p["corpus"], width=width))
        weak = "" if p["r"] >= 0.8 else " (below the 0.8 threshold: no persisting match)"
        blocks.append(
            f"<h3>{html.escape(p['parent'])} → {html.escape(p['child'])} on {html.escape(p['corpus'])}: r = {p['r']:.3f}{weak}</h3>"
            f"<div class='pair'><div>{_feature_heading(db, folder, p['parent'], p['parent_sae'], p['parent_feature'])}{left}</div>"
            f"<div>{_feature_heading(db, folder, p['child'], p['child_sae'], p['child_feature'])}{right}</div></div>"
        )
    return "".join(blocks)


def _feature_heading(db: duckdb.DuckDBPyConnection, folder: Path, model: str, sae: str, feature: int) -> str:
    """A feature's name (linked to its page when one was written) and its best-scored explanation."""
    label = _linked(folder, sae, feature, f"{model} feature {feature}")
    explained = _named_rows(db, "report/feature_explanation", sae=sae, feature=feature)
    text = (f"<p class='note'>{html.escape(explained[0]['explanation'])}"
            + (f" (score {explained[0]['score']:.2f})" if explained[0]["score"] is not None else "") + "</p>"
            if explained else "<p class='note'>not explained yet</p>")
    return f"<h4>{label}</h4>{text}"


def families_section(db: duckdb.DuckDBPyConnection, folder: Path, limit: int = 40) -> str:
    if not _defined(db, "family_members"):
        return _undefined("family_members")
    families = _table(db, "report/families", limit=limit)
    if not families.num_rows:
        return _missing("feature families", "featstore correlate PARENT_SAE CHILD_SAE for every lineage edge")
    return ("<p>Chains of matches at r ≥ 0.8 across generations, from a root model's feature through its "
            "descendants (views <code>feature_families</code>, <code>family_members</code>).</p>" + html_table(families))


SECTIONS = (
    ("Run overview", overview_section),
    ("Feature flow between models (Figure 2)", flow_section),
    ("Persistence against the matching threshold", threshold_section),
    ("Agreement between match methods", agreement_section),
    ("Merge sweep (Figure 5)", sweep_section),
    ("Explanation scores (Figure 6)", scores_section),
    ("Top activations and their matches (Figures 3–4)", showcase_section),
    ("Feature families", families_section),
)


def build_report(wh: Warehouse, out_dir: str | os.PathLike | None = None,
                 pages: Callable[[Path], None] | None = None) -> Path:
    """Write `index.html` and its PNGs to `out_dir` (default `<warehouse>/report`), swapped in whole.

    `pages(folder)` writes more pages into the new folder before the sections are drawn, so the
    figures link to them (the browser's static feature pages: `featstore.browser.export.report_with_pages`).
    """
    out = Path(out_dir) if out_dir is not None else wh.root / "report"
    tmp, old = (out.with_name(f".{out.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    with wh.connect():  # brings the schema up to date; the report itself only reads
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if pages is not None:
            pages(tmp)
        with wh.connect(read_only=True) as db:
            sections = [(title, make(db, tmp)) for title, make in SECTIONS]
        (tmp / "index.html").write_text(page(f"featstore report: {wh.root.name}", sections))
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return out / "index.html"
