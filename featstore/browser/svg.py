"""Inline SVG charts drawn server-side: small histograms and clickable graphs, no JavaScript.

Each function returns markup for a Jinja template (`Markup`), with every label escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from markupsafe import Markup

from featstore.report.figures import MODEL_COLORS, layout_lineage


def bars(counts: Sequence[float], *, width: int = 240, height: int = 56, labels: tuple[str, str] = ("", ""),
         title: str = "", color: str = "#dd8452") -> Markup:
    """A bar chart of `counts` (one bar each), with the first and last bin's labels under it."""
    peak = max(counts, default=0) or 1
    step = width / max(len(counts), 1)
    rects = "".join(
        f"<rect x='{i * step:.1f}' y='{height - 12 - (height - 14) * c / peak:.1f}' width='{max(step - 1, 1):.1f}'"
        f" height='{(height - 14) * c / peak:.1f}' fill='{color}'><title>{escape(str(c))}</title></rect>"
        for i, c in enumerate(counts) if c
    )
    axis = (f"<line x1='0' y1='{height - 12}' x2='{width}' y2='{height - 12}' stroke='#999'/>"
            f"<text x='0' y='{height - 1}' font-size='9'>{escape(labels[0])}</text>"
            f"<text x='{width}' y='{height - 1}' font-size='9' text-anchor='end'>{escape(labels[1])}</text>")
    head = f"<title>{escape(title)}</title>" if title else ""
    return Markup(f"<svg class='chart' width='{width}' height='{height}' viewBox='0 0 {width} {height}' role='img'>"
                  f"{head}{rects}{axis}</svg>")


def lineage_graph(models: Sequence[str], edges: Sequence[dict], node_href: Callable[[str], str | None],
                  edge_href: Callable[[dict], str | None], node_label: Callable[[str], str] = str,
                  width: int = 900) -> Markup:
    """Figure 2 as SVG: models as boxes, edges as arrows labelled with `label`; each one a link.

    edges: {parent, child, label}; a label's lines (split at "\n") are centred on the arrow's middle.
    """
    pos = layout_lineage(models, [(e["parent"], e["child"]) for e in edges])
    rows = len({y for _, y in pos.values()}) or 1
    height = 120 * rows
    box_w, box_h = 150, 44

    def xy(name: str) -> tuple[float, float]:
        x, y = pos[name]
        return x * width, (1 - y) * height

    parts = ["<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7'"
             " orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#555'/></marker></defs>"]
    for e in edges:
        (x0, y0), (x1, y1) = xy(e["parent"]), xy(e["child"])
        line = (f"<line x1='{x0:.0f}' y1='{y0 + box_h / 2:.0f}' x2='{x1:.0f}' y2='{y1 - box_h / 2 - 2:.0f}'"
                f" stroke='#555' stroke-width='2' marker-end='url(#arrow)'/>"
                + _label((x0 + x1) / 2, (y0 + y1) / 2, e.get("label", "")))
        parts.append(_linked(edge_href(e), line, f"edge {e['parent']} → {e['child']}"))
    for i, name in enumerate(models):
        if name not in pos:
            continue
        x, y = xy(name)
        box = (f"<rect x='{x - box_w / 2:.0f}' y='{y - box_h / 2:.0f}' width='{box_w}' height='{box_h}' rx='8'"
               f" fill='{MODEL_COLORS[i % len(MODEL_COLORS)]}'/>"
               f"<text x='{x:.0f}' y='{y - 3:.0f}' text-anchor='middle' fill='white' font-weight='bold'"
               f" font-size='13'>{escape(name)}</text>"
               f"<text x='{x:.0f}' y='{y + 13:.0f}' text-anchor='middle' fill='white' font-size='10'>"
               f"{escape(node_label(name))}</text>")
        parts.append(_linked(node_href(name), box, f"model {name}"))
    return Markup(f"<svg class='graph' width='{width}' height='{height}' viewBox='0 0 {width} {height}'"
                  f" role='img'>{''.join(parts)}</svg>")


def family_graph(model_order: Sequence[str], lineage: Sequence[tuple[str, str]], edges: Sequence[dict],
                 here: tuple[str, int], href: Callable[[str, int], str | None], width: int = 560) -> Markup:
    """A feature family as a small graph: (model, feature) nodes by generation, links labelled with r."""
    nodes = sorted({(e["parent"], e["parent_feature"]) for e in edges} | {(e["child"], e["child_feature"]) for e in edges},
                   key=lambda n: (model_order.index(n[0]) if n[0] in model_order else 99, n[1]))
    gen_y = {m: y for m, (_, y) in layout_lineage(list(model_order), lineage).items()}
    by_row: dict[float, list] = {}
    for node in nodes:
        by_row.setdefault(gen_y.get(node[0], 0.0), []).append(node)
    levels = sorted(by_row, reverse=True)
    height = 64 * len(levels) + 10
    pos = {}
    for level, y in enumerate(levels):
        row = by_row[y]
        for i, node in enumerate(row):
            pos[node] = ((i + 1) / (len(row) + 1) * width, 30 + 64 * level)
    best: dict[tuple, dict] = {}
    for e in edges:
        key = ((e["parent"], e["parent_feature"]), (e["child"], e["child_feature"]))
        if key not in best or e["r"] > best[key]["r"]:
            best[key] = e
    parts = []
    for (a, b), e in best.items():
        (x0, y0), (x1, y1) = pos[a], pos[b]
        parts.append(f"<line x1='{x0:.0f}' y1='{y0 + 12:.0f}' x2='{x1:.0f}' y2='{y1 - 12:.0f}' stroke='#888'/>"
                     f"<text x='{(x0 + x1) / 2 + 4:.0f}' y='{(y0 + y1) / 2 + 4:.0f}' font-size='10' stroke='white' stroke-width='3'"
                     f" paint-order='stroke'>r {e['r']:.2f}</text>")
    for node in nodes:
        x, y = pos[node]
        colour = "#c44e52" if node == here else "#4c72b0"
        label = f"{node[0]}:{node[1]}"
        box = (f"<rect x='{x - 60:.0f}' y='{y - 12:.0f}' width='120' height='24' rx='6' fill='{colour}'/>"
               f"<text x='{x:.0f}' y='{y + 4:.0f}' text-anchor='middle' fill='white' font-size='11'>{escape(label)}</text>")
        parts.append(box if node == here else _linked(href(*node), box, label))
    return Markup(f"<svg class='graph' width='{width}' height='{height}' viewBox='0 0 {width} {height}'"
                  f" role='img'>{''.join(parts)}</svg>")


def _label(x: float, y: float, text: str, size: int = 11) -> str:
    """A label of one or more lines (split at "\n") centred on (x, y), on a white box that hides the arrow
    behind it (its width estimated from the longest line: SVG cannot measure text without a script)."""
    lines = text.split("\n")
    width, height = 0.58 * size * max(len(line) for line in lines) + 8, (size + 2) * len(lines) + 4
    spans = "".join(f"<tspan x='{x:.0f}' y='{y - height / 2 + 2 + (i + 0.8) * (size + 2):.0f}'>{escape(line)}</tspan>"
                    for i, line in enumerate(lines))
    return (f"<rect x='{x - width / 2:.0f}' y='{y - height / 2:.0f}' width='{width:.0f}' height='{height:.0f}' rx='4'"
            f" fill='white' fill-opacity='0.92'/>"
            f"<text text-anchor='middle' font-size='{size}' class='edge-label'>{spans}</text>")


def _linked(href: str | None, inner: str, title: str) -> str:
    body = f"<title>{escape(title)}</title>{inner}"
    return f"<a href='{escape(href)}'>{body}</a>" if href else f"<g>{body}</g>"
