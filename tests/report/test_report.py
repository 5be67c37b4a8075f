"""The HTML report on a synthetic warehouse written with SQL, checked in a real headless browser."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from helpers import REPORT_EDGES, REPORT_MODELS, fill
from matplotlib.image import imread

from featstore.report import build as report_module
from featstore.report.build import build_report
from featstore.report.figures import layout_lineage
from featstore.report.markup import highlighted_contexts


def test_lineage_layout_puts_generations_on_rows():
    pos = layout_lineage(list(REPORT_MODELS), REPORT_EDGES)
    assert pos["base"][1] > pos["lua"][1] == pos["tinystories"][1] > pos["luastories"][1]
    assert pos["lua"][0] != pos["tinystories"][0]


def test_contexts_shade_tokens_by_activation():
    rows = [{"rank": 1, "position": -1, "text": "a<b", "act": 0.0}, {"rank": 1, "position": 0, "text": " x", "act": 2.0},
            {"rank": 2, "position": 0, "text": "\n", "act": 1.0}]
    out = highlighted_contexts(rows)
    assert out.count("class='ctx'") == 2
    assert "a&lt;b" in out and "rgba(255, 136, 0, 1.00)" in out and "rgba(255, 136, 0, 0.50)" in out and "⏎" in out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One synthetic warehouse and its report, shared by the tests that only read them."""
    from featstore.warehouse import Warehouse

    wh = Warehouse(tmp_path_factory.mktemp("report") / "wh")
    fill(wh)
    return wh, build_report(wh)


def test_report_on_synthetic_warehouse(built):
    warehouse, index = built
    assert index == warehouse.root / "report" / "index.html"
    page = index.read_text()
    for title, _ in report_module.SECTIONS:
        assert title.replace("–", "&ndash;") in page or title in page
    images = sorted(p.name for p in index.parent.glob("*.png"))
    assert "figure5_sweep_lua_tinystories_slerp.png" in images and "figure6_scores.png" in images
    for name in images:
        assert f"src='{name}'" in page
        pixels = imread(index.parent / name)
        assert pixels.shape[0] > 100 and pixels.std() > 0.01, name  # drawn, not blank
    # showcase: the strongest match of base -> lua is feature 0 -> 0 at r 0.9, with shaded contexts
    assert "base → lua on eval-lua: r = 0.900" in page
    assert page.count("class='ctx'") >= 2 * 5
    assert "No models" not in page and "No merge sweep" not in page
    assert "decoder_cosine" in page and "Where activation r and decoder cosine disagree most" in page


def test_seed_floor_reaches_figure_2_and_the_threshold_plot(built):
    from featstore.report.build import flow_data
    from featstore.report.figures import threshold_figure

    warehouse, _ = built
    edges = warehouse.query("SELECT * FROM persistence_summary WHERE parent = 'base'").to_pylist()
    nodes, arrows = flow_data(list(REPORT_MODELS), edges, {})
    assert {n["name"]: n["floor"] for n in nodes}["base"] == pytest.approx(4 / 6)
    lua = next(a for a in arrows if a["child"] == "lua")
    assert lua["share_persist"] == pytest.approx(1 / 6) and lua["share_vs_floor"] == pytest.approx(0.25)
    floors = warehouse.query("SELECT model, corpus, threshold, primary_share_persisting AS share FROM seed_floor").to_pylist()
    assert {r["threshold"]: r["share"] for r in floors}[0.9] == pytest.approx(4 / 6)
    figure = threshold_figure([{"parent": "base", "child": "lua", "threshold": 0.8, "share_persist": 0.2}], floors)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["base → lua", "seed floor of base (eval-lua)"]
    [agreement] = warehouse.query("SELECT * FROM edge_agreement WHERE child = 'lua'").to_pylist()
    assert (agreement["persisting_a"], agreement["persisting_b"], agreement["persisting_both"]) == (1, 3, 1)


def test_report_shows_metric_columns_finished_steps_explanations_and_a_plain_title(built):
    warehouse, index = built
    page = index.read_text()
    # models: one column per domain, no raw JSON
    assert "<th>val_loss lua</th>" in page and "<th>val_accuracy stories</th>" in page and "{&quot;lua" not in page
    # the running report step is not listed
    start = page.index("Pipeline steps")
    steps = page[start:page.index("Feature flow", start)]
    assert "train-base" in steps and "<td>report</td>" not in steps
    # Figures 3-4: the explanation beside the feature, whitespace visible
    assert "This feature looks mainly for &quot;local&quot;." in page
    showcase = page[page.index("Top activations and their matches"):]
    assert "·x" in showcase and "⏎" in showcase
    # no path of the build machine in the title
    assert str(warehouse.root.parent) not in page and "<title>featstore report: wh</title>" in page


def test_sweep_figure_marks_the_merge_t():
    pair = {"model_a": "lua", "model_b": "tinystories", "method": "slerp", "eval_set": "lua"}
    rows = [{**pair, "t": t, "evaluated": "merge", "accuracy": 0.5 - 0.2 * t} for t in (0.0, 0.5, 1.0)]
    rows.append({**pair, "t": None, "evaluated": "base", "accuracy": 0.2})
    fig = report_module.sweep_figure(rows, [("luastories", 0.58)])
    marks = [line for line in fig.axes[0].lines if list(line.get_xdata()) == [0.58, 0.58]]
    assert len(marks) == 1 and marks[0].get_label() == "luastories (t = 0.58)"


def test_report_draws_the_sweep_with_the_registered_merge(built, monkeypatch):
    warehouse, _ = built
    seen = []
    real = report_module.sweep_figure
    monkeypatch.setattr(report_module, "sweep_figure", lambda *a: seen.append(a[1]) or real(*a))
    build_report(warehouse, warehouse.root / "report-again")
    assert seen == [[("luastories", 0.58)]]


def test_report_on_empty_warehouse_says_what_to_run(warehouse):
    page = build_report(warehouse).read_text()
    assert "No models in this warehouse yet: run <code>featstore run</code>" in page
    assert "No merge sweep" in page and "No explanation scores" in page


def test_failed_report_keeps_the_previous_one(built, monkeypatch):
    warehouse, index = built
    before = index.read_text()

    def broken(wh, folder):
        (folder / "half.png").write_bytes(b"x")
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(report_module, "SECTIONS", report_module.SECTIONS[:1] + (("Broken", broken),))
    with pytest.raises(RuntimeError):
        build_report(warehouse)
    assert index.read_text() == before
    assert not (index.parent / "half.png").exists()
    assert sorted(p.name for p in warehouse.root.iterdir() if p.name.startswith(".report")) == []


def test_report_renders_in_headless_chromium(built, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for this test: apt-get install -y chromium (see .ci/run)"
    _, index = built
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,7000",
         f"--screenshot={shot}", index.as_uri()],
        check=True, capture_output=True, timeout=90,
    )
    pixels = imread(shot)
    assert pixels.shape[:2] == (7000, 1200)
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # text and figures, not a blank page
    blue = (np.abs(rgb - np.array([0x4C, 0x72, 0xB0]) / 255).max(axis=-1) < 0.02)
    assert blue.sum() > 500  # the base model's box in Figure 2 and its curves
    orange = (rgb[..., 0] > 0.9) & (rgb[..., 1] > 0.45) & (rgb[..., 1] < 0.75) & (rgb[..., 2] < 0.3)
    assert orange.sum() > 50  # the highlighted tokens rendered
