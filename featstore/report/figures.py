"""The report's figures: plain data in, a matplotlib Figure out (no pyplot, no global backend state)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from matplotlib.figure import Figure

MODEL_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
FLOOR_DASHES = [(0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2)), (0, (2, 3))]  # one dash pattern per model's floor curve


def layout_lineage(models: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, tuple[float, float]]:
    """Positions for any lineage DAG (merges of merges too): generation on the vertical axis, each
    generation ordered by where its parents sit, so arrows cross as little as they can."""
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
    positions: dict[str, tuple[float, float]] = {}

    def centre(name: str) -> float:
        xs = [positions[p][0] for p in parents[name] if p in positions]
        return sum(xs) / len(xs) if xs else -1.0

    for level in sorted(rows):  # parents are placed before their children, so their x is known
        names = sorted(rows[level], key=centre)
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
