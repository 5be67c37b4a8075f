"""HTML pieces of the report, shared with the browser: tables, highlighted contexts, the page shell."""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Sequence

import pyarrow as pa

HIGHLIGHT_RGB = "255, 136, 0"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape("" if value is None else str(value))


class Markup(str):
    """A table cell that is HTML already (a link), written as it is."""


def html_table(table: pa.Table | Sequence[dict], limit: int = 200) -> str:
    rows = table.to_pylist() if isinstance(table, pa.Table) else list(table)
    if not rows:
        return "<p class='empty'>no rows</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{v if isinstance(v, Markup) else _cell(v)}</td>" for v in row.values()) + "</tr>"
                   for row in rows[:limit])
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


def feature_page_path(sae: str, feature: int) -> str:
    """Where `featstore report --features N` writes a feature's page, relative to index.html."""
    return f"sae/{sae}/feature/{feature}.html"
