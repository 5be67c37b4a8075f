"""featstore.correlation.correlate against dense numpy / pandas references on random sparse data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from featstore.correlation.engines import sql as sql_engine
from featstore.correlation.correlate import MIN_COFIRING, correlate
from featstore.errors import FeatstoreError

N_TOKENS, D_A, D_B, VOCAB = 240, 18, 22, 12


def sparse_side(rng, d_sae, density):
    """Dense (N, d_sae) activations: positive where firing, else 0; one dead and one rare feature."""
    dense = np.where(rng.random((N_TOKENS, d_sae)) < density, rng.gamma(2.0, 1.0, (N_TOKENS, d_sae)), 0.0)
    dense[:, 0] = 0.0                                   # dead: never fires
    dense[:, 1] = 0.0
    dense[rng.integers(N_TOKENS), 1] = 1.5             # fires once
    return dense.astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    a = sparse_side(rng, D_A, rng.uniform(0.05, 0.5, D_A))
    b = sparse_side(rng, D_B, rng.uniform(0.05, 0.5, D_B))
    b[:, 5] = np.where(a[:, 7] > 0, a[:, 7] * 2 + rng.random(N_TOKENS).astype(np.float32) * 0.1, 0)  # a planted match
    b[:, 6] = np.where(rng.random(N_TOKENS) < 0.1, 0, 1.0 + rng.random(N_TOKENS) * 0.2).astype(np.float32)  # fires almost always
    b[a[:, 1] > 0] = 0.0  # nothing of b fires where a's feature 1 fires: its best match cannot co-fire
    return a, b, rng.integers(0, VOCAB, N_TOKENS)


@pytest.fixture(scope="module")
def filled(module_catalog, data):
    """Two models sharing a tokenizer, one SAE each, one corpus with activations of both (shared by the tests)."""
    a, b, token_ids = data
    fake_catalog = module_catalog
    fake_catalog.model("m1")
    fake_catalog.model("m2", parents=["m1"], relation="finetune")
    fake_catalog.sae("sa", "m1", D_A)
    fake_catalog.sae("sb", "m2", D_B)
    start = fake_catalog.corpus("c", N_TOKENS, token_ids)
    for sae, dense in (("sa", a), ("sb", b)):
        tok, feature = np.nonzero(dense)
        fake_catalog.activations(sae, "c", tok + start, feature, dense[tok, feature], N_TOKENS)
    return fake_catalog.wh


def all_tokens_reference(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(a.T.astype(np.float64), b.T.astype(np.float64))[: a.shape[1], a.shape[1]:]


def cofiring_reference(a, b, min_n=MIN_COFIRING):
    ref = np.full((a.shape[1], b.shape[1]), np.nan)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            both = (a[:, i] > 0) & (b[:, j] > 0)
            x, y = a[both, i].astype(np.float64), b[both, j].astype(np.float64)
            if both.sum() >= min_n and x.std() > 0 and y.std() > 0:
                ref[i, j] = np.corrcoef(x, y)[0, 1]
    return ref


def token_type_mean_reference(a, b, token_ids):
    """The paper's way: pivot to mean activation per (token type, feature), then DataFrame.corr()."""
    def pivot(dense, prefix):
        tok, feature = np.nonzero(dense)
        frame = pd.DataFrame({"token_id": token_ids[tok], "feature": [f"{prefix}{f}" for f in feature], "act": dense[tok, feature]})
        return frame.pivot_table(index="token_id", columns="feature", values="act", aggfunc="mean")

    table = pd.concat([pivot(a, "a"), pivot(b, "b")], axis=1).corr()
    ref = np.full((a.shape[1], b.shape[1]), np.nan)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            if f"a{i}" in table.index and f"b{j}" in table.columns:
                ref[i, j] = table.loc[f"a{i}", f"b{j}"]
    return ref


def reference(stat, data):
    a, b, token_ids = data
    if stat == "all_tokens":
        return all_tokens_reference(a, b)
    if stat == "cofiring":
        return cofiring_reference(a, b)
    return token_type_mean_reference(a, b, token_ids)


def stored(wh, run_id):
    pairs = {(r["feature_a"], r["feature_b"]): r["r"] for r in
             wh.query("SELECT * FROM correlations WHERE run_id = ?", [run_id]).to_pylist()}
    best = {(r["side"], r["feature"]): (r["match"], r["r"]) for r in
            wh.query("SELECT * FROM best_matches WHERE run_id = ?", [run_id]).to_pylist()}
    return pairs, best


def check_against(ref, pairs, best, floor):
    expected = {(i, j) for i, j in zip(*np.nonzero(np.nan_to_num(ref, nan=-2) >= floor))}
    borderline = {(i, j) for i, j in zip(*np.nonzero(np.abs(np.nan_to_num(ref, nan=-2) - floor) < 1e-5))}
    assert set(pairs) ^ expected <= borderline
    for (i, j), r in pairs.items():
        assert r == pytest.approx(ref[i, j], abs=1e-5)
    for side, matrix in (("a", ref), ("b", ref.T)):
        assert len([k for k in best if k[0] == side]) == matrix.shape[0]  # every feature has a row
        for f, row in enumerate(matrix):
            match, r = best[(side, f)]
            if np.all(np.isnan(row)):
                assert match is None and r is None
            else:
                assert r == pytest.approx(np.nanmax(row), abs=1e-5)
                assert row[match] == pytest.approx(np.nanmax(row), abs=1e-5)


@pytest.mark.parametrize("stat", ["all_tokens", "cofiring", "token_type_mean"])
def test_matches_dense_reference(filled, data, stat):
    run = correlate(filled, "sa", "sb", corpus="c", stat=stat, r_floor=0.2, progress=False)
    ref = reference(stat, data)
    assert np.isfinite(ref).sum() > 100  # the reference has enough defined pairs to mean something
    pairs, best = stored(filled, run["id"])
    assert run["n_pairs"] == len(pairs) > 0
    check_against(ref, pairs, best, 0.2)


def test_best_match_can_be_a_never_cofiring_partner(filled, data):
    run = correlate(filled, "sa", "sb", corpus="c", progress=False)
    a, b, _ = data
    pairs, best = stored(filled, run["id"])
    match, r = best[("a", 1)]
    assert r < 0 and r == pytest.approx(np.nanmax(all_tokens_reference(a, b)[1]), abs=1e-6)
    match, r = best[("a", 7)]
    assert match == 5 and r > 0.9 and (7, 5) in pairs


def test_small_blocks_and_saturated_masks_give_the_same_result(filled, data, monkeypatch):
    """Many feature-range blocks, and a 1-bit mask so the exact never-co-firing search runs."""
    monkeypatch.setattr(sql_engine, "PAIRS_PER_BLOCK", 50)
    monkeypatch.setattr(sql_engine, "MASK_BITS", 1)
    run = correlate(filled, "sa", "sb", corpus="c", progress=False)
    check_against(reference("all_tokens", data), *stored(filled, run["id"]), 0.2)


def snapshot(wh):
    return [wh.query(f"SELECT * FROM {t} ORDER BY ALL").to_pylist() for t in ("correlation_runs", "correlations", "best_matches")]


def test_rerun_replaces_in_place(filled):
    first = correlate(filled, "sa", "sb", corpus="c", r_floor=0.1, progress=False)
    n_runs = filled.scalar("SELECT count(*) FROM correlation_runs")
    second = correlate(filled, "sa", "sb", corpus="c", r_floor=0.5, progress=False)
    assert second["id"] == first["id"] and second["r_floor"] == 0.5
    assert second["min_cofiring"] is None and second["engine"] == "sql"  # all_tokens has no co-firing minimum
    assert filled.scalar("SELECT count(*) FROM correlation_runs") == n_runs
    assert filled.scalar("SELECT min(r) FROM correlations WHERE run_id = ?", [first["id"]]) >= 0.5
    assert filled.scalar("SELECT count(*) FROM best_matches WHERE run_id = ?", [first["id"]]) == D_A + D_B


def test_corpus_is_inferred_when_shared(filled):
    assert correlate(filled, "sa", "sb", progress=False)["corpus"] == "c"


@pytest.mark.parametrize("change, args, message", [
    (None, dict(sae_a="nope"), "unknown SAE 'nope'"),
    (None, dict(corpus="nope"), "unknown corpus 'nope'"),
    (None, dict(stat="spearman"), "unknown statistic 'spearman'"),
    (None, dict(r_floor=2.0), "between -1 and 1"),
    ("other_tokenizer", {}, "different tokenizers"),
    ("missing_partition", {}, "no activations for SAE 'sx_missing_partition'"),
    ("nan_activation", {}, "non-finite or non-positive"),
    ("short_partition", {}, "cover 10 tokens"),
    ("tok_outside_corpus", {}, "1 activations of SAE 'sx_tok_outside_corpus' lie outside the tokens"),
])
def test_refusals_leave_the_warehouse_unchanged(filled, module_catalog, change, args, message):
    correlate(filled, "sa", "sb", corpus="c", progress=False)
    kwargs = dict(sae_a="sa", sae_b="sb", corpus="c")
    if change is not None:
        other = f"sx_{change}"
        model = "m3" if change == "other_tokenizer" else "m2"
        if change == "other_tokenizer":
            module_catalog.model(model, tokenizer="other")
        module_catalog.sae(other, model, 4)
        if change == "tok_outside_corpus":
            module_catalog.activations(other, "c", [0, N_TOKENS], [0, 1], [1.0, 2.0], N_TOKENS)
        elif change in ("nan_activation", "short_partition"):
            bad = change == "nan_activation"
            module_catalog.activations(other, "c", [0, 1], [0, 1], [np.nan if bad else 1.0, 2.0], N_TOKENS if bad else 10)
        kwargs["sae_b"] = other
    kwargs.update(args)
    before = snapshot(filled)
    with pytest.raises(FeatstoreError, match=message):
        correlate(filled, kwargs.pop("sae_a"), kwargs.pop("sae_b"), progress=False, **kwargs)
    assert snapshot(filled) == before


def test_cli_correlate(filled):
    from click.testing import CliRunner

    from cli import main

    runner = CliRunner()
    done = runner.invoke(main, ["--warehouse", str(filled.root), "correlate", "sa", "sb", "--stat", "cofiring", "--floor", "0.3"])
    assert done.exit_code == 0, done.output
    assert "sa x sb on c (cofiring" in done.output and "stored with r >= 0.3" in done.output
    failed = runner.invoke(main, ["--warehouse", str(filled.root), "correlate", "sa", "nope"])
    assert failed.exit_code == 1 and failed.output.startswith("error: unknown SAE 'nope'")


def test_several_corpora_are_checked_before_any_run(filled):
    from featstore.correlation.correlate import correlate_corpora

    before = snapshot(filled)
    with pytest.raises(FeatstoreError, match="unknown corpus 'nope'"):
        correlate_corpora(filled, "sa", "sb", ["c", "nope"], progress=False)
    assert snapshot(filled) == before
    runs = correlate_corpora(filled, "sa", "sb", progress=False)  # default: every corpus both were ingested on
    assert [r["corpus"] for r in runs] == ["c"]
