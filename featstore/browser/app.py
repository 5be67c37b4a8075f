"""`featstore serve`: the Flask app of the feature browser, read-only over one warehouse, served by waitress.

Pages: the lineage (/), an edge's features (/edge/P/C), a model (/model/M), an SAE (/sae/S), a
feature (/sae/S/feature/N), search (/search) and SQL (/sql, /sql.csv). Links are written relative to
a `<base href>`, so the same templates render a live site or, with `static_pages`, the static
pages `featstore report --features N` writes (links to pages not written become plain text).
"""

from __future__ import annotations

import io
import ipaddress
import time
from urllib.parse import urlencode

import duckdb
import pyarrow.csv as pacsv
import waitress
from flask import Flask, Response, g, redirect, render_template, request
from markupsafe import Markup, escape

from featstore.browser import pages, svg
from featstore.browser.data import Store
from featstore.browser.sqlpage import MAX_ROWS, Refused, run_query, saved_objects
from featstore.errors import FeatstoreError
from featstore.report.markup import HIGHLIGHT_RGB
from featstore.warehouse import Warehouse


def create_app(wh: Warehouse, store: Store | None = None, static_pages: set[str] | None = None) -> Flask:
    """The browser over `wh`; with `static_pages` (paths like 'sae/x/feature/3.html') links only to those."""
    app = Flask(__name__)
    app.config["STORE"] = store or Store(wh)

    def href(*parts, **query) -> str | None:
        """A link relative to <base href>; None (plain text) for a page a static export did not write."""
        path = "/".join(str(p) for p in parts)
        query = {k: v for k, v in query.items() if v is not None}
        if static_pages is not None:
            return f"{path}.html" if not query and f"{path}.html" in static_pages else None
        return (f"{path}?{urlencode(query)}" if query else path) or "./"

    def base_href() -> str:
        if static_pages is None:
            return "/"
        return "../" * request.path.strip("/").count("/")

    app.jinja_env.globals.update(href=href, base_href=base_href, static_export=lambda: static_pages is not None,
                                 svg=svg, fmt=_fmt, warehouse=wh.root.name)
    app.jinja_env.filters["shaded"] = shaded

    @app.before_request
    def open_connection():
        g.con = app.config["STORE"].connect()

    @app.teardown_request
    def close_connection(_exc):
        con = g.pop("con", None)
        if con is not None:
            con.close()

    @app.errorhandler(pages.NotFound)
    def not_found(exc: pages.NotFound):
        return render_template("404.html", message=str(exc), links=exc.links), 404

    @app.errorhandler(404)
    def no_route(_exc):
        return render_template("404.html", message=f"No page at {request.path}. Start from:",
                               links=[("the lineage", ()), ("search", ("search",)), ("SQL", ("sql",))]), 404

    @app.errorhandler(FeatstoreError)
    def featstore_error(exc: FeatstoreError):
        return render_template("404.html", message=str(exc), links=[]), 500

    store = app.config["STORE"]

    @app.get("/")
    def lineage():
        data = pages.lineage_page(store, g.con)
        graphs = {corpus: lineage_svg(data, corpus) for corpus in data["corpora"] or [None]}
        return render_template("lineage.html", graphs=graphs, **data)

    def lineage_svg(data: dict, corpus: str | None) -> Markup:
        on = {(e["parent"], e["child"]): e for e in data["summary"] if e["corpus"] == corpus}
        live = {**{e["parent"]: e["parent_persist"] + e["parent_disappear"] for e in on.values()},
                **{e["child"]: e["child_persist"] + e["child_emerge"] for e in on.values()}}
        edges = [{"parent": e["parent"], "child": e["child"],
                  "label": edge_label(on[(e["parent"], e["child"])]) if (e["parent"], e["child"]) in on else e["relation"]}
                 for e in data["snap"].lineage]
        return svg.lineage_graph(data["models"], edges, lambda m: href("model", m),
                                 lambda e: href("edge", e["parent"], e["child"], corpus=corpus),
                                 lambda m: f"{live[m]} live features" if m in live else data["snap"].models[m]["kind"])

    @app.get("/edge/<parent>/<child>")
    def edge(parent: str, child: str):
        args = request.args
        data = pages.edge_page(store, g.con, parent, child, args.get("corpus"), args.get("status") or None,
                               args.get("sort", "r"), args.get("desc", "1") == "1", max(args.get("offset", 0, type=int), 0))
        return render_template("edge.html", **data)

    @app.get("/model/<name>")
    def model(name: str):
        return render_template("model.html", **pages.model_page(store, g.con, name))

    @app.get("/sae/<sae>")
    def sae(sae: str):
        if request.args.get("feature", "").isdigit():
            return redirect(href("sae", sae, "feature", int(request.args["feature"])))
        return render_template("sae.html", **pages.sae_page(store, g.con, sae))

    @app.get("/sae/<sae>/feature/<int:feature>")
    def feature(sae: str, feature: int):
        data = pages.feature_page(store, g.con, sae, feature, request.args.get("corpus"))
        snap = store.snapshot(g.con)
        family_svg = svg.family_graph(list(snap.models), [(e["parent"], e["child"]) for e in snap.lineage],
                                      data["family"], (data["sae"]["model"], feature),
                                      lambda m, f: href("sae", snap.primary_sae(m), "feature", f))
        return render_template("feature.html", family_svg=family_svg, **data)

    @app.get("/sae/<sae>/feature/<path:rest>")
    def feature_bad(sae: str, rest: str):
        row = pages.require_sae(store.snapshot(g.con), sae)
        raise pages.NotFound(f"SAE {sae!r} has features 0 to {row['d_sae'] - 1}; {rest!r} is not one of them.",
                             [(f"{sae} (all features)", ("sae", sae))])

    @app.get("/search")
    def search():
        token, text, model_name = (request.args.get(k, "") for k in ("token", "text", "model"))
        snap = store.snapshot(g.con)
        results = {
            "by_token": pages.token_search(store, g.con, token) if token else None,
            "by_text": pages.rows(g.con, "search_explanations", text=text) if text else None,
            "by_model": [s for s in snap.saes.values() if s["model"] == model_name] if model_name else None,
        }
        return render_template("search.html", token=token, text=text, model=model_name, models=list(snap.models),
                               **results)

    @app.get("/sql")
    def sql():
        query = request.args.get("q", "").strip()
        result, error = None, None
        if query:
            try:
                result = run_query(g.con, query)
            except Refused as exc:
                error = f"Refused: {exc}"
            except duckdb.Error as exc:
                error = str(exc)
        return render_template("sql.html", query=query, result=result, error=error, limit=MAX_ROWS,
                               objects=saved_objects(g.con))

    @app.get("/sql.csv")
    def sql_csv():
        query = request.args.get("q", "").strip()
        try:
            table = run_query(g.con, query, limit=None)
        except Refused as exc:
            return Response(f"Refused: {exc}\n", status=400, mimetype="text/plain")
        except duckdb.Error as exc:
            return Response(f"{exc}\n", status=400, mimetype="text/plain")
        out = io.BytesIO()
        pacsv.write_csv(table, out)
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": "attachment; filename=query.csv"})

    return app


def edge_label(summary: dict) -> str:
    """An edge's share persisting, then the parent's seed floor (what persists into an SAE differing
    only in its seed) and the share as a multiple of it: a share means little until set against it."""
    share, floor, times = summary["parent_share_persisting"], summary["parent_floor"], summary["parent_share_vs_floor"]
    first = f"{100 * (share or 0):.1f}% persist"
    if floor is None:
        return f"{first}\nno seed floor"
    return f"{first}\nfloor {100 * floor:.1f}%" + (f" · {times:.2f}×" if times is not None else "")


def shaded(tokens: list[dict]) -> Markup:
    """A context's tokens as spans shaded by activation (the report's orange), the ranked one outlined.

    Written in Python rather than a template loop: a feature page has ~1,000 of these spans."""
    return Markup("".join(
        f'<span class="tok{" centre" if t["centre"] else ""}" style="background: rgba({HIGHLIGHT_RGB}, {t["alpha"]:.2f})"'
        f' title="act {t["act"]:.3f}">{escape(t["text"])}</span>' for t in tokens))


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"
    return str(value)


def serve(wh: Warehouse, host: str = "127.0.0.1", port: int = 8000, allow_remote: bool = False, log=print) -> None:
    """Index the warehouse's partitions, then serve with waitress (a production WSGI server) until
    interrupted. Loopback only unless `allow_remote`: the browser is read-only, but without authentication."""
    if not (allow_remote or is_loopback(host)):
        raise FeatstoreError(f"--host {host} lets other machines read the whole warehouse (the browser is read-only "
                             "but has no authentication); pass --allow-remote to serve it there anyway")
    store = Store(wh)
    started = time.perf_counter()
    store.warm()
    shown = f"[{host}]" if ":" in host else host
    log(f"indexed {wh.root} in {time.perf_counter() - started:.1f} s; serving on http://{shown}:{port}/")
    waitress.serve(create_app(wh, store), host=host, port=port)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: localhost or a loopback address (127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
