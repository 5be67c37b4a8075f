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
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pyarrow as pa
from matplotlib.figure import Figure

from featstore.db import Database, run
from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, sql_dir

MODEL_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
HIGHLIGHT_RGB = "255, 136, 0"
FLOOR_DASHES = [(0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (2, 3))]  # one dash pattern per model's floor curve


# -- figures: plain data in, matplotlib Figure out (no pyplot, no global backend state) -----------


def layout_lineage(models: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Positions for a lineage DAG: generation on the vertical axis, siblings spread horizontally."""
    parents = defaultdict(list)
    for parent, child in edges:
        parents[child].append(parent)
    depth: dict[str, int] = {}

    def generation(name: str, seen: tuple = ()) -> int:
        if name not in depth:
            ups = [p for p in parents[name] if p in models and p not in seen]
            depth[name] = 1 + max((generation(p, seen + (name,)) for p in ups), default=-1)
        return depth[name]

    rows = defaultdict(list)
    for name in models:
        rows[generation(name)].append(name)
    n_rows = max(rows) + 1 if rows else 1
    positions = {}
    for level, names in rows.items():
        for i, name in enumerate(names):
            positions[name] = ((i + 1) / (len(names) + 1), 1 - (level + 0.5) / n_rows)
    return positions


def flow_figure(nodes: Sequence[dict], edges: Sequence[dict]) -> Figure:
    """Figure 2: models as boxes, lineage edges as arrows labelled with the share of features persisting.

    nodes: {name, n_features, n_emerged, floor}; edges: {parent, child, n_parent, n_persist, share_persist,
    share_vs_floor}. floor: the model's seed-noise floor (None when it has no seed replica).
    """
    names = [n["name"] for n in nodes]
    pos = layout_lineage(names, [(e["parent"], e["child"]) for e in edges])
    generations = len({y for _, y in pos.values()}) or 1
    fig = Figure(figsize=(7.5, 1.7 * generations + 0.4))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    for edge in edges:
        (x0, y0), (x1, y1) = pos[edge["parent"]], pos[edge["child"]]
        width = 1 + 6 * (edge["share_persist"] or 0)
        ax.annotate("", xy=(x1, y1 + 0.07), xytext=(x0, y0 - 0.07),
                    arrowprops={"arrowstyle": "-|>", "lw": width, "color": "#555", "shrinkA": 0, "shrinkB": 0})
        label = f"{100 * (edge['share_persist'] or 0):.1f}% persist\n({edge['n_persist']}/{edge['n_parent']})"
        if edge.get("share_vs_floor") is not None:
            label += f"\n{edge['share_vs_floor']:.2f}× parent's floor"
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, label, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round", "fc": "white", "ec": "#bbb"})
    for i, node in enumerate(nodes):
        x, y = pos[node["name"]]
        emerged = "" if node.get("n_emerged") is None else f"\n{node['n_emerged']} emerged"
        floor = "" if node.get("floor") is None else f"\nseed floor {100 * node['floor']:.1f}%"
        ax.text(x, y, f"{node['name']}\n{node['n_features']} live features{emerged}{floor}", ha="center", va="center",
                fontsize=9, color="white", fontweight="bold",
                bbox={"boxstyle": "round,pad=0.6", "fc": MODEL_COLORS[i % len(MODEL_COLORS)], "ec": "none"})
    fig.tight_layout()
    return fig


def threshold_figure(rows: Sequence[dict], floors: Sequence[dict] = ()) -> Figure:
    """Share of parent features persisting against the matching threshold, one line per edge.

    floors: {model, corpus, threshold, share}: each model's seed-noise floor, drawn dashed.
    """
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot()
    by_edge = defaultdict(list)
    for row in rows:
        by_edge[f"{row['parent']} → {row['child']}"].append((row["threshold"], row["share_persist"]))
    for i, (edge, points) in enumerate(sorted(by_edge.items())):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", ms=3, label=edge, color=MODEL_COLORS[i % len(MODEL_COLORS)])
    by_model = defaultdict(list)
    for row in floors:
        by_model[(row["model"], row["corpus"])].append((row["threshold"], row["share"]))
    for i, ((model, corpus), points) in enumerate(sorted(by_model.items())):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, ls=FLOOR_DASHES[i % len(FLOOR_DASHES)], color="#666", label=f"seed floor of {model} ({corpus})")
    ax.set_xlabel("correlation threshold r")
    ax.set_ylabel("share of parent features persisting")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def sweep_figure(rows: Sequence[dict], merges: Sequence[tuple[str, float]] = ()) -> Figure:
    """Figure 5: next-token accuracy of the merged model against t on each validation set, base dashed.

    rows: `merge_sweep` rows of one (model_a, model_b, method): the merges and the base model's;
    merges: (name, t) of the registered merges of the pair, marked by a dotted vertical line.
    """
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot()
    curves, baselines = defaultdict(list), {}
    for row in rows:
        if row["evaluated"] == "merge":
            curves[row["eval_set"]].append((row["t"], row["accuracy"]))
        else:
            baselines[row["eval_set"]] = (row["evaluated"], row["accuracy"])
    for i, (eval_set, points) in enumerate(sorted(curves.items())):
        color = MODEL_COLORS[i % len(MODEL_COLORS)]
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", ms=3, color=color, label=f"merge on {eval_set} data")
        if eval_set in baselines:
            base, accuracy = baselines[eval_set]
            ax.axhline(accuracy, ls="--", color=color, alpha=0.7, label=f"{base} on {eval_set} data")
    for name, t in merges:
        ax.axvline(t, ls=":", color="#333", label=f"{name} (t = {t:g})")
    ax.set_xlabel(f"t  ({rows[0]['method']}: 0 = {rows[0]['model_a']}, 1 = {rows[0]['model_b']})")
    ax.set_ylabel("next-token accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def score_histogram_figure(groups: dict[str, Sequence[float]], title: str) -> Figure:
    """Figure 6: explanation-score histograms, one per group, on shared bins."""
    fig = Figure(figsize=(6.5, 3.4))
    ax = fig.add_subplot()
    bins = [i / 20 for i in range(-4, 21)]
    for i, (name, values) in enumerate(groups.items()):
        mean = sum(values) / len(values)
        ax.hist(values, bins=bins, alpha=0.55, color=MODEL_COLORS[i % len(MODEL_COLORS)],
                label=f"{name} (n={len(values)}, mean {mean:.2f})")
    ax.set_xlabel("explanation score (Pearson of simulated vs true activation)")
    ax.set_ylabel("features")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# -- HTML pieces ----------------------------------------------------------------------------------


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape("" if value is None else str(value))


def html_table(table: pa.Table | Sequence[dict], limit: int = 200) -> str:
    rows = table.to_pylist() if isinstance(table, pa.Table) else list(table)
    if not rows:
        return "<p class='empty'>no rows</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row.values()) + "</tr>" for row in rows[:limit])
    more = f"<p class='note'>{len(rows) - limit} more rows not shown</p>" if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def visible_text(text: str) -> str:
    """A token's text with its whitespace drawn (⏎ line break, · space, → tab), so blank tokens show."""
    return text.replace("\n", "⏎").replace(" ", "·").replace("\t", "→")


def highlighted_contexts(rows: Sequence[dict]) -> str:
    """Figures 3–4: each context a line of tokens shaded by the feature's activation on them.

    rows: {rank, position, text, act}, one per token of each context; position 0 is the top token.
    """
    contexts = defaultdict(list)
    for row in rows:
        contexts[row["rank"]].append(row)
    peak = max((r["act"] for r in rows), default=0) or 1.0
    lines = []
    for rank in sorted(contexts):
        spans = []
        for row in sorted(contexts[rank], key=lambda r: r["position"]):
            alpha = min(1.0, max(0.0, row["act"] / peak))
            centre = " centre" if row["position"] == 0 else ""
            spans.append(
                f"<span class='tok{centre}' style='background: rgba({HIGHLIGHT_RGB}, {alpha:.2f})'"
                f" title='act {row['act']:.3f}'>{html.escape(visible_text(row['text']))}</span>"
            )
        lines.append(f"<div class='ctx'>{''.join(spans)}</div>")
    return "".join(lines) or "<p class='empty'>never fires</p>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.2rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.6rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } img { max-width: 100%; border: 1px solid #eee; }
.note, .empty { color: #777; font-size: 0.9rem; } code { background: #f4f4f4; padding: 0 0.2rem; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin: 0.8rem 0 1.4rem; }
.pair h4 { margin: 0 0 0.3rem; font-size: 0.9rem; }
.ctx { font-family: ui-monospace, monospace; font-size: 0.8rem; white-space: pre; overflow: hidden;
       border-bottom: 1px dotted #eee; padding: 1px 0; }
.tok.centre { outline: 1px solid #c60; }
"""


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    toc = "".join(f"<li><a href='#s{i}'>{html.escape(name)}</a></li>" for i, (name, _) in enumerate(sections))
    body = "".join(f"<h2 id='s{i}'>{html.escape(name)}</h2>{content}" for i, (name, content) in enumerate(sections))
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><ul>{toc}</ul>{body}</body></html>"
    )


def _image(fig: Figure, folder: Path, name: str, alt: str) -> str:
    fig.savefig(folder / name, dpi=110)
    return f"<img src='{name}' alt='{html.escape(alt)}'>"


# -- sections: query the warehouse, draw, return HTML ---------------------------------------------


def _table(db: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> pa.Table:
    try:
        return db.sql(sql, params=params or None).to_arrow_table()
    except duckdb.Error as exc:
        raise FeatstoreError(f"report query failed: {str(exc).splitlines()[0]}") from exc


def _query(name: str) -> str:
    """A named statement of sql/queries/report/."""
    return sql_dir().joinpath("queries", "report", f"{name}.sql").read_text()


def _rows(db: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict]:
    return _table(db, sql, params).to_pylist()


def _named_rows(db: duckdb.DuckDBPyConnection, name: str, **params) -> list[dict]:
    """Rows of a named query (sql/queries/report/)."""
    try:
        return Database().records(name, con=db, **params)
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
    steps = _table(db, "SELECT * FROM run_steps WHERE NOT (step = 'report' AND status = 'running')")
    models = per_domain_columns(_rows(db, "SELECT * FROM run_models"))
    saes = _table(db, "SELECT * FROM run_saes")
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
    edges = _rows(db, "SELECT * FROM persistence_summary ORDER BY corpus, parent, child")
    if not edges:
        return _missing("correlations between parent and child SAEs", "featstore correlate PARENT_SAE CHILD_SAE")
    models = [r["name"] for r in Database().models.rows_where(select="name", order_by="created_at, name", con=db)]
    merged = _rows(db, "SELECT child, corpus, count(*) AS n FROM merge_inheritance WHERE inheritance = 'emerged' GROUP BY ALL")
    parts = ["<p>Arrows are lineage edges, labelled with the share of the parent's live features (those that fire) "
             "whose best match in the child correlates at r ≥ 0.8 over the same tokens: the paper's Figure 2. Arrow "
             "width follows that share; a model's box counts its live features and those with no match in any "
             "parent (emerged), and gives its seed-noise floor: the share of its features persisting into an SAE "
             "that differs only in its seed (<code>seed_floor</code>, measured on the model's own slice), which the "
             "edge label compares the share with. One panel per evaluation slice.</p>"]
    for corpus in sorted({e["corpus"] for e in edges}):
        on_corpus = [e for e in edges if e["corpus"] == corpus]
        emerged_in_merge = {m["child"]: m["n"] for m in merged if m["corpus"] == corpus}
        nodes, arrows = flow_data(models, on_corpus, emerged_in_merge)
        parts.append(f"<h3>{html.escape(corpus)}</h3>")
        parts.append(_image(flow_figure(nodes, arrows), folder, f"figure2_flow_{corpus}.png", f"feature flow on {corpus}"))
    return "".join(parts) + html_table(_table(db, "SELECT * FROM run_persistence"))


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
    agreement = _table(db, "SELECT * FROM edge_agreement WHERE 'all_tokens' IN (method_a, method_b)")
    if not agreement.num_rows:
        return _missing("match evidence beside the correlations", "featstore match PARENT_SAE CHILD_SAE --corpus SLICE")
    worst = _named_rows(db, "report/disagreements", n=per_edge)
    return ("<p>Per edge (and seed pair) and slice: how many of the parent's live features each match method calls "
            "persisting at its default threshold (<code>match_methods</code>: r ≥ 0.8, cosine ≥ 0.7, Jaccard ≥ 0.5), how "
            "many both do and with the same partner; best match, all pairs with <code>all_tokens</code> "
            "(<code>method_agreement(policy := …)</code> for the others).</p>" + html_table(agreement)
            + "<h3>Where activation r and decoder cosine disagree most</h3>"
            "<p>Parent features one method calls persisting and the other not, farthest apart "
            "(<code>method_disagreements</code>), with their top tokens on the slice.</p>" + html_table(worst))


def sweep_section(db: duckdb.DuckDBPyConnection, folder: Path) -> str:
    rows = _rows(db, "SELECT * FROM merge_sweep ORDER BY model_a, model_b, method, t")
    if not rows:
        return _missing("merge sweep", "featstore merge-sweep A B")
    parts = []
    for a, b, method in sorted({(r["model_a"], r["model_b"], r["method"]) for r in rows}):
        pair = [r for r in rows if (r["model_a"], r["model_b"], r["method"]) == (a, b, method)]
        base = next((r["evaluated"] for r in pair if r["evaluated"] != "merge"), "base")
        merges = [(m["child"], m["merge_t"]) for m in _rows(db, _query("merges_of_pair"), [a, b, method])]
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
    return "".join(parts) + html_table(_table(db, "SELECT * FROM score_summary WHERE kind = 'self'"))


def showcase_section(db: duckdb.DuckDBPyConnection, folder: Path, per_edge: int = 2, width: int = 8) -> str:
    pairs = _rows(db, "SELECT * FROM showcase_matches(n := ?)", [per_edge])
    if not pairs:
        return _missing("feature matches", "featstore correlate PARENT_SAE CHILD_SAE")
    blocks = ["<p>The strongest matches of each edge on each slice, among parent features that fire at least 10 "
              "times there: the parent feature's top activations on that slice (left) and its best match in the "
              "child (right), each token shaded by the feature's activation (the paper's Figures 3–4).</p>"]
    for p in pairs:
        contexts = "SELECT * FROM top_contexts(?, ?, corpus_name := ?, width := ?)"
        left = highlighted_contexts(_rows(db, contexts, [p["parent_sae"], p["parent_feature"], p["corpus"], width]))
        right = highlighted_contexts(_rows(db, contexts, [p["child_sae"], p["child_feature"], p["corpus"], width]))
        weak = "" if p["r"] >= 0.8 else " (below the 0.8 threshold: no persisting match)"
        blocks.append(
            f"<h3>{html.escape(p['parent'])} → {html.escape(p['child'])} on {html.escape(p['corpus'])}: r = {p['r']:.3f}{weak}</h3>"
            f"<div class='pair'><div>{_feature_heading(db, folder, p['parent'], p['parent_sae'], p['parent_feature'])}{left}</div>"
            f"<div>{_feature_heading(db, folder, p['child'], p['child_sae'], p['child_feature'])}{right}</div></div>"
        )
    return "".join(blocks)


def feature_page_path(sae: str, feature: int) -> str:
    """Where `featstore report --features N` writes a feature's page, relative to index.html."""
    return f"sae/{sae}/feature/{feature}.html"


def _feature_heading(db: duckdb.DuckDBPyConnection, folder: Path, model: str, sae: str, feature: int) -> str:
    """A feature's name (linked to its page when one was written) and its best-scored explanation."""
    label = f"{html.escape(model)} feature {feature}"
    if (folder / feature_page_path(sae, feature)).exists():
        label = f"<a href='{feature_page_path(sae, feature)}'>{label}</a>"
    explained = _named_rows(db, "report/feature_explanation", sae=sae, feature=feature)
    text = (f"<p class='note'>{html.escape(explained[0]['explanation'])}"
            + (f" (score {explained[0]['score']:.2f})" if explained[0]["score"] is not None else "") + "</p>"
            if explained else "<p class='note'>not explained yet</p>")
    return f"<h4>{label}</h4>{text}"


def families_section(db: duckdb.DuckDBPyConnection, folder: Path, limit: int = 40) -> str:
    if not _defined(db, "family_members"):
        return _undefined("family_members")
    families = _table(db, "SELECT * FROM family_members LIMIT ?", [limit])
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


def build_report(wh: Warehouse, out_dir: str | os.PathLike | None = None, features: int | None = None) -> Path:
    """Write `index.html` and its PNGs to `out_dir` (default `<warehouse>/report`), swapped in whole.

    With `features`, also the browser's static feature pages for the N most frequent features of each
    SAE plus every feature the report shows, linked from the figures (`sae/<sae>/feature/<n>.html`).
    """
    out = Path(out_dir) if out_dir is not None else wh.root / "report"
    tmp, old = (out.with_name(f".{out.name}.{kind}-{os.getpid()}") for kind in ("tmp", "old"))
    with wh.connect():  # brings the schema up to date; the report itself only reads
        pass
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if features is not None:
            from featstore.browser.export import export_feature_pages

            export_feature_pages(wh, tmp, features)
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
