"""featstore.correlation.correlate against dense numpy / pandas references on random sparse data."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    D_A,
    D_B,
    N_TOKENS,
    all_tokens_reference,
    check_against,
    reference,
    run_cli,
    stored,
)

from featstore.correlation.correlate import correlate
from featstore.correlation.engines import sql as sql_engine
from featstore.errors import FeatstoreError


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
    done = run_cli(filled, "correlate", "sa", "sb", "--stat", "cofiring", "--floor", "0.3")
    assert done.exit_code == 0, done.output
    assert "sa x sb on c (cofiring" in done.output and "stored with r >= 0.3" in done.output
    failed = run_cli(filled, "correlate", "sa", "nope")
    assert failed.exit_code == 1 and failed.output.startswith("error: unknown SAE 'nope'")


def test_several_corpora_are_checked_before_any_run(filled):
    from featstore.correlation.correlate import corpora_to_correlate, correlate_corpora

    before = snapshot(filled)
    with pytest.raises(FeatstoreError, match="unknown corpus 'nope'"):
        correlate_corpora(filled, "sa", "sb", ["c", "nope"], progress=False)
    assert snapshot(filled) == before
    every, _ = corpora_to_correlate(filled, "sa", "sb", every=True)  # every corpus both were ingested on
    runs = correlate_corpora(filled, "sa", "sb", every, progress=False)
    assert [r["corpus"] for r in runs] == ["c"]
