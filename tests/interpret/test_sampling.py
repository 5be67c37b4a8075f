"""Example sampling per feature (macro feature_samples, featstore.interpret.sampling) on synthetic features."""

from __future__ import annotations

import math

import pytest

from featstore.errors import FeatstoreError
from featstore.interpret.sampling import (
    SCORED_KINDS,
    SHOWN_KINDS,
    load_samples,
    sample_features,
    select_features,
)


def draw(wh, features: list[int], sae: str = "toy", corpus: str = "synth", seed: int = 0) -> int:
    with wh.transaction() as con:
        return sample_features(wh, con, sae, corpus, features, seed=seed)


def choose(wh, sae: str = "toy", corpus: str = "synth", **kwargs) -> list[int]:
    with wh.connect() as con:
        return select_features(wh, con, sae, corpus, **kwargs)


def stored(wh, feature: int, sae: str = "toy") -> list[dict]:
    return wh.query(
        "SELECT * FROM explanation_samples WHERE sae = ? AND feature = ? ORDER BY kind, rank", [sae, feature]
    ).to_pylist()


def true_acts(wh, feature: int, sae: str = "toy") -> dict[int, float]:
    rows = wh.query("SELECT tok, act FROM activations WHERE sae = ? AND feature = ?", [sae, feature]).to_pylist()
    return {r["tok"]: r["act"] for r in rows}


def test_examples_follow_the_papers_recipe(interp_warehouse):
    wh = interp_warehouse
    assert draw(wh, [0, 6]) == 2
    for feature in (0, 6):
        rows, acts = stored(wh, feature), true_acts(wh, feature)
        by_kind = {k: [r for r in rows if r["kind"] == k] for k in (*SHOWN_KINDS, *SCORED_KINDS)}
        peak = max(acts.values())
        ranked = sorted(acts.items(), key=lambda item: (-item[1], item[0]))
        shown_half, held_half = dict(ranked[0::2]), dict(ranked[1::2])  # odd / even activation ranks
        # top: the 10 highest activations of the explainer's half, the maximum in bin 9
        assert sorted((r["act"] for r in by_kind["top"]), reverse=True) == pytest.approx(
            sorted(shown_half.values(), reverse=True)[:10])
        assert max(r["bin"] for r in by_kind["top"]) == 9
        # every firing example's bin is its min-max normalised activation quantised to 0..9
        for r in rows:
            if r["act"] > 0:
                assert r["bin"] == min(9, math.floor(10 * r["act"] / peak))
                assert r["act"] == pytest.approx(acts[r["tok"]])
        # quantile: at most 2 per lower bin, and they are the highest of their bin outside the top
        per_bin = {}
        for r in by_kind["quantile"]:
            per_bin.setdefault(r["bin"], []).append(r["act"])
        assert all(b < 9 and len(v) <= 2 for b, v in per_bin.items())
        top_toks = {r["tok"] for r in by_kind["top"]}
        for b, taken in per_bin.items():
            rest = sorted((a for t, a in shown_half.items()
                           if t not in top_toks and min(9, math.floor(10 * a / peak)) == b), reverse=True)
            assert sorted(taken, reverse=True) == pytest.approx(rest[: len(taken)])
        assert len(by_kind["random"]) == 5
        # top_token: other occurrences of the top tokens; zero: tokens where the feature does not fire
        top_texts = {r["token"] for r in by_kind["top"]}
        assert by_kind["top_token"] and all(r["token"] in top_texts for r in by_kind["top_token"])
        assert len(by_kind["zero"]) == 20 and all(r["act"] == 0 and r["tok"] not in acts for r in by_kind["zero"])
        # held-out examples for scoring come from the other half and are never shown to the explainer
        assert sorted((r["act"] for r in by_kind["heldout_top"]), reverse=True) == pytest.approx(
            sorted(held_half.values(), reverse=True)[:10])
        assert len(by_kind["heldout_random"]) == 10
        assert all(r["tok"] in held_half for r in by_kind["heldout_top"] + by_kind["heldout_random"])
        assert not any(r["tok"] in held_half for r in rows if r["kind"] in SHOWN_KINDS)
        assert len({r["tok"] for r in rows}) == len(rows)


def test_contexts_are_rebuilt_from_tokens_and_vocab(interp_warehouse):
    wh = interp_warehouse
    draw(wh, [3])
    text = {r["token_id"]: r["text"] for r in wh.query("SELECT token_id, text FROM vocab").to_pylist()}
    docs: dict[int, list[int]] = {}
    for r in wh.query("SELECT doc_id, token_id FROM tokens WHERE corpus = 'synth' ORDER BY doc_id, pos").to_pylist():
        docs.setdefault(r["doc_id"], []).append(r["token_id"])
    for row in stored(wh, 3):
        doc, pos = docs[row["doc_id"]], row["pos"]
        assert row["token"] == text[doc[pos]]
        assert row["before"] == "".join(text[t] for t in doc[max(0, pos - 12):pos])
        assert row["after"] == "".join(text[t] for t in doc[pos + 1:pos + 5])
    # feature 3 fires right after " local": its top examples show it in their context
    assert all(r["before"].endswith(" local") for r in stored(wh, 3) if r["kind"] == "top")


def test_sampling_is_seeded(interp_warehouse):
    wh = interp_warehouse
    draw = "SELECT tok, kind FROM feature_samples('toy', 'synth', features := [5], seed := ?) ORDER BY tok"
    first, again, other = (wh.query(draw, [s]).to_pylist() for s in (0, 0, 1))
    assert first == again
    assert first != other


def test_stored_examples_are_kept_and_loaded_in_order(interp_warehouse):
    wh = interp_warehouse
    assert draw(wh, [1, 2], seed=0) == 2
    before = stored(wh, 1)
    assert draw(wh, [1, 2, 4], seed=7) == 1  # only the new feature is drawn
    assert stored(wh, 1) == before
    with wh.connect() as con:
        loaded = load_samples(wh, con, "toy", "synth", [1, 2, 4])
    assert set(loaded) == {1, 2, 4}
    kinds = [s.kind for s in loaded[1]]
    assert kinds[0] == "top" and kinds[-1] == "zero"
    assert len(loaded[1]) == len(before)


def test_select_features(interp_warehouse):
    wh = interp_warehouse
    counts = wh.query(
        "SELECT feature, count(*) AS n FROM activations WHERE sae = 'toy' GROUP BY feature ORDER BY n DESC"
    ).to_pylist()
    assert choose(wh, top=2) == sorted(r["feature"] for r in counts[:2])
    assert choose(wh) == list(range(7))
    assert choose(wh, features=[4, 2, 4]) == [2, 4]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": [2, 9]}, "feature(s) 9 of SAE 'toy' never fire"),
        ({"features": [2], "top": 3}, "either features or top"),
        ({"top": 0}, "--top must be at least 1"),
    ],
)
def test_bad_feature_choices_are_refused(interp_warehouse, kwargs, message):
    with pytest.raises(FeatstoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
        choose(interp_warehouse, **kwargs)


def test_unknown_sae_or_corpus_is_refused(interp_warehouse):
    with pytest.raises(FeatstoreError, match="no activations for SAE 'nope'"):
        draw(interp_warehouse, [1], sae="nope")
    with pytest.raises(FeatstoreError, match="no activations"):
        choose(interp_warehouse, corpus="other")
    assert interp_warehouse.scalar("SELECT count(*) FROM explanation_samples") == 0
