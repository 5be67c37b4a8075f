"""Persistence views over a small lineage base -> (lua, stories) -> merge, against dense numpy references."""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pytest
from helpers import run_cli

from featstore.correlation.correlate import correlate, persistence_summary
from featstore.errors import FeatstoreError

N_TOKENS, D = 400, 10
EDGES = [("base", "lua"), ("base", "stories"), ("lua", "merged"), ("stories", "merged")]


def copy_of(rng, parent, keep=1.0):
    """A child feature that fires with the parent feature (on a `keep` share of its tokens), slightly rescaled."""
    fires = (parent > 0) & (rng.random(N_TOKENS) < keep)
    return np.where(fires, parent * (1 + 0.05 * rng.random(N_TOKENS)), 0.0)


@pytest.fixture(scope="module")
def dense():
    """Activations per model: planted copies along the lineage, the rest independent; feature D-1 is dead,
    feature D-2 constant (it fires on every token with one value, so it has no defined r)."""
    rng = np.random.default_rng(3)

    def independent():
        m = np.where(rng.random((N_TOKENS, D)) < rng.uniform(0.05, 0.3, D), rng.gamma(2.0, 1.0, (N_TOKENS, D)), 0.0)
        m[:, D - 1] = 0.0
        m[:, D - 2] = 1.5
        return m

    base, lua, stories, merged = independent(), independent(), independent(), independent()
    for child_f, parent_f in ((0, 2), (1, 3), (2, 4), (3, 5)):
        lua[:, child_f] = copy_of(rng, base[:, parent_f])
    lua[:, 4] = copy_of(rng, base[:, 6], keep=0.6)  # a weaker match, r around 0.7
    stories[:, 0] = copy_of(rng, base[:, 2])
    stories[:, 1] = copy_of(rng, base[:, 3], keep=0.7)
    merged[:, 0] = copy_of(rng, lua[:, 0])          # lua 0 and stories 0 both copy base 2: from both parents
    merged[:, 1] = copy_of(rng, lua[:, 2])          # only in lua
    merged[:, 2] = copy_of(rng, stories[:, 5])      # only in stories
    return {"base": base, "lua": lua, "stories": stories, "merged": merged}


@pytest.fixture(scope="module")
def lineage(module_catalog, dense):
    cat = module_catalog
    cat.model("base")
    cat.model("lua", parents=["base"], relation="finetune")
    cat.model("stories", parents=["base"], relation="finetune")
    cat.model("merged", parents=["lua", "stories"], relation="merge", merge_t=0.58)
    start = cat.corpus("eval", N_TOKENS)
    for model, acts in dense.items():
        cat.sae(f"{model}-sae", model, D)
        tok, feature = np.nonzero(acts)
        cat.activations(f"{model}-sae", "eval", tok + start, feature, acts[tok, feature], N_TOKENS)
    # a second, non-primary SAE of base whose features match nothing: persistence must ignore it
    cat.sae("base-sae-seed2", "base", D, primary=False)
    noise = np.random.default_rng(9).random((N_TOKENS, D)) < 0.2
    tok, feature = np.nonzero(noise)
    cat.activations("base-sae-seed2", "eval", tok + start, feature, np.ones(len(tok)), N_TOKENS)
    for parent, child in EDGES:
        if (parent, child) == ("stories", "merged"):  # stored the other way round: the views must not care
            correlate(cat.wh, f"{child}-sae", f"{parent}-sae", corpus="eval", progress=False)
        else:
            correlate(cat.wh, f"{parent}-sae", f"{child}-sae", corpus="eval", progress=False)
    correlate(cat.wh, "base-sae-seed2", "lua-sae", corpus="eval", progress=False)
    return cat.wh


def best_r(dense, parent, child):
    """Best r of every parent feature (rows) and child feature (columns), NaN for dead ones."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.corrcoef(dense[parent].T, dense[child].T)[:D, D:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of dead features
        return np.nanmax(r, axis=1), np.nanmax(r, axis=0)


def expected_status(r, threshold, side):
    """The verdict per feature; with no defined r, feature D-1 is dead and D-2 constant."""
    return ["dead" if f == D - 1 else "constant" if f == D - 2 else "persists" if x >= threshold
            else ("disappears" if side == "parent" else "emerges") for f, x in enumerate(r)]


@pytest.mark.parametrize("threshold", [0.8, 0.6])
def test_persistence_statuses_match_dense_reference(lineage, dense, threshold):
    rows = lineage.query("SELECT * FROM persistence(threshold := ?) ORDER BY parent, child, side, feature",
                         [threshold]).to_pylist()
    assert {(r["parent"], r["child"]) for r in rows} == set(EDGES)
    for parent, child in EDGES:
        parent_r, child_r = best_r(dense, parent, child)
        for side, ref, sae in (("parent", parent_r, f"{parent}-sae"), ("child", child_r, f"{child}-sae")):
            got = [r for r in rows if (r["parent"], r["child"], r["side"]) == (parent, child, side)]
            assert [r["sae"] for r in got] == [sae] * D
            assert [r["status"] for r in got] == expected_status(ref, threshold, side)
            assert np.allclose([np.nan if r["r"] is None else r["r"] for r in got], ref, atol=1e-5, equal_nan=True)


def test_planted_features_persist_at_default(lineage):
    rows = lineage.query("SELECT parent, child, feature, match FROM persistence"
                         " WHERE side = 'parent' AND status = 'persists' ORDER BY ALL").to_pylist()
    lua = {(r["feature"], r["match"]) for r in rows if (r["parent"], r["child"]) == ("base", "lua")}
    assert lua == {(2, 0), (3, 1), (4, 2), (5, 3)}  # base 6 -> lua 4 is a weaker copy, below 0.8


def test_summary_counts_and_shares(lineage, dense):
    summary = {(r["parent"], r["child"]): r for r in persistence_summary(lineage, 0.8).to_pylist()}
    assert summary == {(r["parent"], r["child"]): r for r in lineage.query("SELECT * FROM persistence_summary").to_pylist()}
    for parent, child in EDGES:
        parent_r, child_r = best_r(dense, parent, child)
        row = summary[(parent, child)]
        assert row["parent_persist"] == np.sum(parent_r >= 0.8)
        assert row["parent_disappear"] == np.sum(parent_r < 0.8)
        assert row["parent_dead"] == row["child_dead"] == row["parent_constant"] == row["child_constant"] == 1
        assert row["child_emerge"] == np.sum(child_r < 0.8)
        for side in ("parent", "child"):  # every feature of the SAE is counted once
            assert sum(row[f"{side}_{k}"] for k in ("dead", "constant", "persist")) + row["parent_disappear" if side == "parent"
                                                                                         else "child_emerge"] == D
        assert row["parent_share_persisting"] == pytest.approx(np.sum(parent_r >= 0.8) / (D - 2))
        assert row["child_share_persisting"] == pytest.approx(np.sum(child_r >= 0.8) / (D - 2))


def test_curve_matches_reference_at_every_threshold(lineage, dense):
    curve = lineage.query("SELECT * FROM persistence_curve WHERE stat = 'all_tokens'").to_pylist()
    thresholds = sorted({r["threshold"] for r in curve})
    assert thresholds == pytest.approx([0.5 + 0.05 * i for i in range(10)])
    for parent, child in EDGES:
        parent_r, _ = best_r(dense, parent, child)
        shares = [r["parent_share_persisting"] for r in sorted(curve, key=lambda r: r["threshold"])
                  if (r["parent"], r["child"]) == (parent, child)]
        assert shares == pytest.approx([np.sum(parent_r >= t) / (D - 2) for t in thresholds])
    lua = [r["parent_share_persisting"] for r in curve if (r["parent"], r["child"]) == ("base", "lua")]
    assert len(set(lua)) > 1  # the weaker planted copy makes the curve step


def test_merge_inheritance(lineage):
    rows = {r["feature"]: r for r in lineage.query("SELECT * FROM merge_inheritance").to_pylist()}
    assert set(rows) == set(range(D))
    assert (rows[0]["parent_a"], rows[0]["parent_b"]) == ("lua", "stories")
    assert rows[0]["inheritance"] == "both" and rows[0]["match_a"] == 0 and rows[0]["match_b"] == 0
    assert rows[1]["inheritance"] == "from_a" and rows[1]["match_a"] == 2
    assert rows[2]["inheritance"] == "from_b" and rows[2]["match_b"] == 5
    assert rows[D - 1]["inheritance"] == "dead" and rows[D - 2]["inheritance"] == "constant"
    assert {rows[f]["inheritance"] for f in range(3, D - 2)} == {"emerged"}
    strict = lineage.query("SELECT count(*) FILTER (WHERE inheritance = 'emerged') AS n FROM merge_inheritance(threshold := 1.0)")
    assert strict.column("n")[0].as_py() == D - 2  # no copy is exact, so at r >= 1 every live feature emerged


def test_feature_families_follow_chains_to_the_merge(lineage):
    rows = lineage.query("SELECT family, list(model || ':' || feature ORDER BY depth, model) AS chain"
                         " FROM feature_families GROUP BY family ORDER BY family").to_pylist()
    chains = {r["family"]: r["chain"] for r in rows}
    assert chains["base:2"] == ["base:2", "lua:0", "stories:0", "merged:0", "merged:0"]  # reached through both parents
    assert chains["base:4"] == ["base:4", "lua:2", "merged:1"]
    assert chains["base:3"] == ["base:3", "lua:1", "stories:1"]  # 70% copy in stories: r about 0.84
    assert all(c[0].startswith("base:") for c in chains.values())


def test_views_and_macros_work_in_the_duckdb_shell(lineage, tmp_path, duckdb_shell):
    shell = duckdb_shell
    sql = ("SELECT (SELECT count(*) FROM persistence(threshold := 0.6)), (SELECT count(*) FROM persistence_curve),"
           " (SELECT count(*) FROM feature_families), (SELECT count(*) FROM merge_inheritance),"
           " (SELECT count(*) FROM feature_matches)")
    done = subprocess.run([shell, "-readonly", "-csv", "-noheader", str(lineage.db_path), "-c", sql],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    in_python = lineage.query(sql).to_pylist()[0].values()
    assert done.stdout.strip() == ",".join(str(v) for v in in_python)


def test_summary_refuses_bad_arguments(lineage):
    with pytest.raises(FeatstoreError, match="unknown statistic"):
        persistence_summary(lineage, 0.8, "median")
    with pytest.raises(FeatstoreError, match="between -1 and 1"):
        persistence_summary(lineage, 1.5)


def test_cli_lists_persistence(lineage):
    result = run_cli(lineage, "persistence", "--threshold", "0.6")
    assert result.exit_code == 0, result.output
    assert "stories" in result.output and "merged" in result.output
    result = run_cli(lineage, "persistence", "--threshold", "7")
    assert result.exit_code == 1 and "error: the threshold must be" in result.output
