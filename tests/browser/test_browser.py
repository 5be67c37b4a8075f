"""The feature browser: pages through Flask's test client, then `featstore serve` driven in Debian's
headless Chromium (Playwright with the system browser; nothing is downloaded)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pytest
from helpers import REPO, fill, run_cli
from matplotlib.image import imread

from featstore.browser.app import create_app
from featstore.browser.sqlpage import run_query
from featstore.warehouse import Warehouse

CHROMIUM = "/usr/bin/chromium"
EXPLANATION = 'This feature looks mainly for "end" (strongly); these are mostly keywords.'


def add_browser_extras(wh: Warehouse, folder: Path) -> None:
    """An explanation and score for toy:0 and decoder weights for toy, on top of interp's catalog."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    w_dec = rng.standard_normal((32, 8)).astype(np.float32)
    w_dec[7] = w_dec[0] + 0.01 * rng.standard_normal(8)  # feature 7's direction is feature 0's
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"W_dec": w_dec}, str(folder / "sae_weights.safetensors"))
    with wh.transaction() as con:
        con.execute("UPDATE saes SET path = ? WHERE id = 'toy'", [str(folder)])
        con.execute("INSERT INTO explanations VALUES ('toy', 'synth', 0, 'builtin', 'v1', ?, 20, 0, 0, DEFAULT)", [EXPLANATION])
        con.execute("INSERT INTO scores (id, sae, corpus, feature, kind, source_sae, source_feature, explainer,"
                    " explainer_version, simulator, simulator_version, score, n_samples)"
                    " VALUES (1, 'toy', 'synth', 0, 'self', 'toy', 0, 'builtin', 'v1', 'builtin', 'v1', 0.87, 40)")


@pytest.fixture(scope="module")
def browsed(tmp_path_factory, interp_template):
    """interp's warehouse (base -> child, SAEs toy and toy_child on corpus synth) plus extras."""
    db_path, partitions, n_tokens = interp_template
    wh = Warehouse(tmp_path_factory.mktemp("browser") / "wh")
    wh.root.mkdir(parents=True)
    shutil.copy(db_path, wh.db_path)
    for sae, table in partitions.items():
        wh.write_partition(sae, "synth", [table], n_tokens=n_tokens, origin="ingest")
    add_browser_extras(wh, wh.root / "saes" / "toy")
    return wh


@pytest.fixture(scope="module")
def client(browsed):
    return create_app(browsed).test_client()


@pytest.fixture(scope="module")
def sliced(tmp_path_factory, interp_template):
    """interp's warehouse plus a slice 'weak' on which toy's feature 0 fires on every token at 0.1 (far more
    often than on synth, far weaker), and toy's seed replica toy_seed1 matching features 0-2 of toy at r 0.95
    and 3-6 at 0.4: base's seed floor is 3/7 against the edge's 4/7 persisting."""
    import pyarrow as pa

    db_path, partitions, n_tokens = interp_template
    wh = Warehouse(tmp_path_factory.mktemp("sliced") / "wh")
    wh.root.mkdir(parents=True)
    shutil.copy(db_path, wh.db_path)
    strong = [(2, "a", f, f, 0.95 if f < 3 else 0.4) for f in range(7)]
    with wh.transaction() as con:
        con.execute("INSERT INTO corpora VALUES ('weak', 'synthetic', 'synthfp', 40, ?, ?, NULL, DEFAULT)", [n_tokens, n_tokens])
        con.execute("INSERT INTO documents SELECT * REPLACE ('weak' AS corpus) FROM documents WHERE corpus = 'synth'")
        con.execute("INSERT INTO tokens SELECT * REPLACE (tok + ? AS tok, 'weak' AS corpus) FROM tokens WHERE corpus = 'synth'", [n_tokens])
        con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, seed, is_primary, seed_of)"
                    " VALUES ('toy_seed1', 'base', 'blocks.0.mlp.hook_post', 0, 64, 32, 'relu', 1, false, 'toy')")
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (2, 'toy', 'toy_seed1', 'synth', 'all_tokens', 0.2, ?, 7)", [n_tokens])
        con.executemany("INSERT INTO best_matches VALUES (?, ?, ?, ?, ?)", strong + [(2, "b", f, f, r) for *_, f, _, r in strong])
    for sae, table in partitions.items():
        wh.write_partition(sae, "synth", [table], n_tokens=n_tokens, origin="ingest")
    wh.write_partition("toy_seed1", "synth", [partitions["toy"]], n_tokens=n_tokens, origin="ingest")
    everywhere = pa.table({"tok": pa.array(range(n_tokens, 2 * n_tokens), pa.uint32()),
                           "feature": pa.array([0] * n_tokens, pa.uint32()), "act": pa.array([0.1] * n_tokens, pa.float32())})
    wh.write_partition("toy", "weak", [everywhere], n_tokens=n_tokens, origin="ingest")
    return wh


def text_of(response) -> str:
    return response.get_data(as_text=True)


# -- pages through the test client ------------------------------------------------------------------


def test_feature_page_shows_explanation_contexts_matches_family_and_neighbours(client):
    page = text_of(client.get("/sae/toy/feature/0"))
    assert EXPLANATION.replace('"', "&#34;") in page and "score 0.87" in page
    # feature 0 fires on " end": every top context is centred on it, shaded at full strength for the top one
    centres = re.findall(r'<span class="tok centre" style="background: rgba\(255, 136, 0, ([0-9.]+)\)"[^>]*>([^<]*)</span>', page)
    assert centres and {text for _, text in centres} == {"·end"} and centres[0][0] == "1.00"
    assert "⏎" in page  # line-break tokens are drawn
    # its match in the child, with r and a link to that feature's page
    assert 'href="sae/toy_child/feature/10"' in page and "child · SAE toy_child" in page
    assert re.search(r'<td class="r">0\.95</td>', page)
    # family graph: base:0 (here) and a link to child:10; decoder neighbour 7 comes first
    assert "base:0" in page and "href='sae/toy_child/feature/10'" in page
    neighbours = page[page.index("Decoder-space neighbours"):]
    assert re.search(r'href="sae/toy/feature/(\d+)"', neighbours).group(1) == "7"


def test_every_feature_page_of_every_sae_renders(client, browsed):
    saes = browsed.query("SELECT id, d_sae FROM saes").to_pylist()
    assert len(saes) == 2
    for sae in saes:
        for feature in range(sae["d_sae"]):
            response = client.get(f"/sae/{sae['id']}/feature/{feature}")
            assert response.status_code == 200, (sae, feature)
            assert "Firing per corpus slice" in text_of(response)


def test_feature_page_opens_on_the_slice_of_its_strongest_activations_and_says_why(sliced):
    client = create_app(sliced).test_client()
    page = text_of(client.get("/sae/toy/feature/0"))  # fires 88 times on synth up to 5.589, on every token of weak at 0.1
    assert "Top activations on synth" in page
    assert ('Showing synth: its strongest activations (max 5.589); other slices: '
            '<a href="sae/toy/feature/0?corpus=weak">weak</a> (max 0.1).') in page
    asked = text_of(client.get("/sae/toy/feature/0?corpus=weak"))
    assert "Top activations on weak" in asked
    assert ('Showing weak as asked (max 0.1); other slices: '
            '<a href="sae/toy/feature/0?corpus=synth">synth</a> (max 5.589, its strongest).') in asked
    assert "Top activations on synth" in text_of(client.get("/sae/toy/feature/0?corpus=nope"))


def test_lineage_shows_each_share_beside_the_seed_floor(sliced, client):
    page = text_of(create_app(sliced).test_client().get("/"))
    graph = page[page.index("<svg class='graph'"):page.index("</svg>")]
    assert ">57.1% persist</tspan>" in graph and ">floor 42.9% · 1.33×</tspan>" in graph  # 4/7 against 3/7
    assert "<td>0.571</td>\n<td>0.429</td><td>1.33</td>" in page
    assert ">no seed floor</tspan>" in text_of(client.get("/"))  # interp's base has no replica


@pytest.fixture
def featstore_cli(monkeypatch):
    """helpers.run_cli with cli.py importable: under a bare `pytest` (the checkout not on sys.path) `import cli`
    finds the namespace package tests/cli/ instead."""
    monkeypatch.syspath_prepend(str(REPO))
    monkeypatch.delitem(sys.modules, "cli", raising=False)
    return run_cli


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "lab-server.example"])
def test_serve_refuses_a_host_other_machines_reach_without_allow_remote(browsed, featstore_cli, monkeypatch, host):
    import waitress

    monkeypatch.setattr(waitress, "serve", lambda *a, **k: pytest.fail("a server was started"))
    result = featstore_cli(browsed, "serve", "--host", host)
    assert result.exit_code == 1
    assert result.output == (f"error: --host {host} lets other machines read the whole warehouse (the browser is "
                             "read-only but has no authentication); pass --allow-remote to serve it there anyway\n")


@pytest.mark.parametrize(("args", "host", "port"), [((), "127.0.0.1", 8000), (("--host", "::1", "--port", "8123"), "::1", 8123),
                                                    (("--host", "0.0.0.0", "--allow-remote"), "0.0.0.0", 8000)])
def test_serve_runs_the_browser_under_waitress(browsed, featstore_cli, monkeypatch, args, host, port):
    import waitress

    served = []
    monkeypatch.setattr(waitress, "serve", lambda app, **options: served.append((app, options)))
    result = featstore_cli(browsed, "serve", *args)
    assert result.exit_code == 0, result.output
    [(app, options)] = served
    assert options == {"host": host, "port": port}
    assert app.test_client().get("/sae/toy/feature/0").status_code == 200  # the browser's WSGI app itself


def test_edge_page_lists_persisting_and_disappearing_features_sortable(client):
    page = text_of(client.get("/edge/base/child?corpus=synth&status=persists&sort=feature&desc=0"))
    parents = re.findall(r'<tr class="persists"><td>parent</td><td><a href="sae/toy/feature/(\d+)"', page)
    assert parents == ["0", "1", "2", "6"]
    assert "disappearing (3)" in page and "persisting (4)" in page
    assert "<code>·end</code>" in page  # top tokens of feature 0
    by_r = text_of(client.get("/edge/base/child?corpus=synth&sort=r&desc=1"))
    rs = [float(r) for r in re.findall(r'<td class="r">([0-9.]+)</td>', by_r)]
    assert rs == sorted(rs, reverse=True) and rs[0] == pytest.approx(0.95)


def test_lineage_model_sae_and_search_pages(client):
    lineage = text_of(client.get("/"))
    assert "href='edge/base/child?corpus=synth'" in lineage and "href='model/base'" in lineage
    model = text_of(client.get("/model/base"))
    assert 'href="sae/toy"' in model and 'href="model/child"' in model
    sae = text_of(client.get("/sae/toy"))
    assert "Most frequent features" in sae and "<svg class='chart'" in sae
    assert client.get("/sae/toy?feature=3").headers["Location"].endswith("sae/toy/feature/3")
    by_token = text_of(client.get("/search?token=end"))
    first = re.search(r'class="token-results".*?href="sae/(\w+)/feature/(\d+)"', by_token, re.S)
    assert first.groups() == ("toy", "0")  # the feature that fires on " end" comes first for toy
    by_text = text_of(client.get("/search?text=mainly+for"))
    assert 'href="sae/toy/feature/0"' in by_text
    assert 'href="sae/toy"' in text_of(client.get("/search?model=base"))


def test_unknown_sae_or_feature_is_a_404_that_says_what_exists(client):
    response = client.get("/sae/nope/feature/1")
    assert response.status_code == 404
    assert "No SAE named &#39;nope&#39;" in text_of(response) and 'href="sae/toy_child"' in text_of(response)
    response = client.get("/sae/toy/feature/32")
    assert response.status_code == 404 and "has features 0 to 31" in text_of(response)
    assert client.get("/sae/toy/feature/-1").status_code == 404
    assert "Edges here" in text_of(client.get("/edge/child/base"))
    assert client.get("/model/nope").status_code == 404


def test_sql_page_runs_reads_refuses_writes_and_shows_duckdb_errors(client, browsed):
    before = hashlib.sha256(browsed.db_path.read_bytes()).hexdigest()
    page = text_of(client.get("/sql", query_string={"q": "SELECT name, kind FROM models ORDER BY name"}))
    assert "<td>base</td><td>base</td>" in page and "download CSV" in page
    assert "persistence_summary" in page and "Per lineage edge" in page  # saved objects with their docs
    assert "Parser Error" in text_of(client.get("/sql", query_string={"q": "SELEC 1"}))
    assert "physical_plan" in text_of(client.get("/sql", query_string={"q": "EXPLAIN SELECT * FROM models"}))
    assert "Catalog Error" in text_of(client.get("/sql", query_string={"q": "SELECT * FROM nope"}))
    for write in ("DROP TABLE models", "INSERT INTO models (name, kind, path) VALUES ('x', 'base', 'p')",
                  f"COPY models TO '{browsed.activations_dir}/x.csv'", "ATTACH 'other.db'", "SET threads = 1",
                  f"EXPLAIN ANALYZE COPY models TO '{browsed.activations_dir}/x.csv'", "SELECT 1; SELECT 2"):
        assert "Refused:" in text_of(client.get("/sql", query_string={"q": write})), write
    assert "Permission Error" in text_of(client.get("/sql", query_string={"q": "SELECT * FROM read_text('/etc/hostname')"}))
    with browsed.connect(read_only=True) as con:  # a runaway query is interrupted
        with pytest.raises(duckdb.InterruptException):
            run_query(con, "SELECT count(*) FROM range(1000000000000)", timeout=0.3)
    csv = client.get("/sql.csv", query_string={"q": "SELECT name FROM models ORDER BY name"})
    assert csv.mimetype == "text/csv" and csv.get_data(as_text=True).splitlines() == ['"name"', '"base"', '"child"']
    assert client.get("/sql.csv", query_string={"q": "DROP TABLE models"}).status_code == 400
    assert hashlib.sha256(browsed.db_path.read_bytes()).hexdigest() == before
    assert not (browsed.activations_dir / "x.csv").exists()


def test_static_feature_pages_beside_the_report(tmp_path):
    from featstore.browser.export import report_with_pages

    wh = Warehouse(tmp_path / "wh")
    fill(wh)
    index = report_with_pages(wh, 2)
    report = index.parent
    pages = sorted(p.relative_to(report).as_posix() for p in report.glob("sae/*/feature/*.html"))
    # the 2 most frequent of each of the 4 SAEs plus the showcased pairs (features 0-3)
    assert len(pages) >= 8 and "sae/base-sae/feature/0.html" in pages
    assert "href='sae/base-sae/feature/0.html'" in index.read_text()
    for page in pages:
        html = (report / page).read_text()
        assert '<base href="../../../">' in html
        assert '<a href="index.html">report</a>' in html
        for link in re.findall(r'<a href="([^"]+)"', html):
            assert (report / link).is_file(), (page, link)  # every link leads to a page that was written


# -- the real server in a real browser --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(wh: Warehouse):
    """`featstore serve` in its own process, on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "--warehouse", str(wh.root), "serve",
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(browsed):
    with serving(browsed) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (see .ci/run)"
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def non_blank(path: Path) -> None:
    pixels = imread(path)[..., :3]
    assert pixels.shape[0] > 200 and pixels.std() > 0.05, path


def test_click_from_lineage_to_edge_to_feature_to_its_match(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(server + "/")
    page.screenshot(path=tmp_path / "lineage.png", full_page=True)
    page.locator("svg.graph a[href*='edge/base/child']").first.click()
    page.wait_for_url("**/edge/base/child?corpus=synth")
    page.screenshot(path=tmp_path / "edge.png", full_page=True)
    page.get_by_role("link", name="toy:0", exact=True).first.click()
    page.wait_for_url("**/sae/toy/feature/0")
    page.screenshot(path=tmp_path / "feature.png", full_page=True)
    assert page.locator(".explanation").first.inner_text() == EXPLANATION
    centre = page.locator(".top-contexts .tok.centre").first
    assert centre.inner_text() == "·end"
    assert centre.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 136, 0)"
    match = page.locator(".card.match").first
    assert match.locator("td.r").first.inner_text() == "0.95"
    link = match.locator("h3 a")
    assert link.get_attribute("href") == "sae/toy_child/feature/10"
    link.click()
    page.wait_for_url("**/sae/toy_child/feature/10")
    assert page.locator("h1").inner_text() == "toy_child feature 10"
    back = page.locator(".card.match h3 a").first
    assert back.get_attribute("href") == "sae/toy/feature/0" and "parent" in page.locator(".card.match").first.inner_text()
    for name in ("lineage", "edge", "feature"):
        non_blank(tmp_path / f"{name}.png")


def test_every_page_kind_renders_in_chromium(server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    kinds = {"model": "/model/base", "sae": "/sae/toy", "search": "/search?token=end",
             "sql": "/sql?q=SELECT+*+FROM+run_steps", "missing": "/sae/nope/feature/3"}
    for kind, url in kinds.items():
        response = page.goto(server + url)
        assert response.status == (404 if kind == "missing" else 200), kind
        page.screenshot(path=tmp_path / f"{kind}.png", full_page=True)
        non_blank(tmp_path / f"{kind}.png")
    page.goto(server + "/sql")
    page.fill("textarea[name=q]", "SELECT nope FROM models")
    page.get_by_role("button", name="run").click()
    assert "Binder Error" in page.locator(".error").inner_text()
    page.fill("textarea[name=q]", "DELETE FROM models")
    page.get_by_role("button", name="run").click()
    assert page.locator(".error").inner_text().startswith("Refused: DELETE")


def test_serve_leaves_the_warehouse_writable_between_requests(server, browsed):
    import urllib.request

    before = hashlib.sha256(browsed.db_path.read_bytes()).hexdigest()
    urllib.request.urlopen(server + "/sae/toy/feature/1").read()
    assert hashlib.sha256(browsed.db_path.read_bytes()).hexdigest() == before  # serving wrote nothing
    with browsed.transaction() as con:  # a writer gets the file while the server runs
        con.execute("INSERT INTO models (name, kind, path) VALUES ('late', 'base', '/m/late')")
    assert "late" in urllib.request.urlopen(server + "/").read().decode()  # and the server sees the change
    with browsed.transaction() as con:
        con.execute("DELETE FROM models WHERE name = 'late'")


def test_lineage_of_a_merge_in_chromium(browser, tmp_path):
    wh = Warehouse(tmp_path / "wh")
    fill(wh)
    with serving(wh) as url:
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.goto(url + "/")
        for model in ("base", "lua", "tinystories", "luastories"):
            assert page.locator(f"svg.graph a[href='model/{model}']").count() == 1
        assert page.locator("svg.graph a[href^='edge/']").count() == 4
        assert "50.0% persist" in page.locator("svg.graph").first.inner_html()  # lua -> luastories: 3 of 6
        page.screenshot(path=tmp_path / "lineage.png", full_page=True)
        non_blank(tmp_path / "lineage.png")
        page.locator("svg.graph a[href='model/luastories']").first.click()
        page.wait_for_url("**/model/luastories")
        assert "slerp t = 0.58" in page.locator("body").inner_text()
