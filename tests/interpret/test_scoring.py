"""Explain + simulate + score orchestration, resumability, transfer, the score views and the CLI."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np
import pytest
from helpers import chat_reply, run_cli

from featstore.errors import FeatstoreError
from featstore.interpret.backends import OpenAIBackend
from featstore.interpret.scoring import explain, score, shuffled_baseline, transfer


def test_builtin_beats_the_shuffled_baseline(interp_warehouse):
    result = shuffled_baseline(interp_warehouse, "toy", progress=False)
    print(f"\nbuiltin mean score {result['explained_mean']:+.3f} | shuffled-explanation baseline {result['shuffled_mean']:+.3f}")
    assert result["features"] == 7 and not result["failed"]
    assert result["explained_mean"] > 0.6
    assert result["explained_mean"] - result["shuffled_mean"] > 0.5
    donors = interp_warehouse.query("SELECT feature, source_feature FROM scores WHERE kind = 'shuffled'").to_pylist()
    assert len(donors) == 7 and all(d["feature"] != d["source_feature"] for d in donors)
    assert sorted(d["source_feature"] for d in donors) == list(range(7))  # every explanation used once


def test_scores_are_pearson_over_the_stored_simulations(interp_warehouse):
    wh = interp_warehouse
    result = score(wh, "toy", features=[0, 3, 5], progress=False)
    assert (result["scored"], result["already_scored"], result["failed"]) == (3, 0, {})
    for row in wh.query("SELECT id, feature, score, n_samples FROM scores").to_pylist():
        sims = wh.query("SELECT simulated, true_act, kind, how FROM simulations WHERE score_id = ?", [row["id"]]).to_pylist()
        assert len(sims) == row["n_samples"] and {s["how"] for s in sims} == {"rule"}
        assert {s["kind"] for s in sims} <= {"heldout_top", "heldout_random", "zero"}
        expected = np.corrcoef([s["simulated"] for s in sims], [s["true_act"] for s in sims])[0, 1]
        assert row["score"] == pytest.approx(expected)
    by_feature = {r["feature"]: r["score"] for r in wh.query("SELECT feature, score FROM scores").to_pylist()}
    assert by_feature[0] > 0.9 and by_feature[5] < 0.3  # a token feature is explained, random noise is not


def test_reruns_skip_what_is_stored(interp_warehouse):
    wh = interp_warehouse
    first = score(wh, "toy", top=4, progress=False)
    assert first["scored"] == 4
    again = score(wh, "toy", progress=False)
    assert (again["scored"], again["already_scored"]) == (3, 4)
    assert explain(wh, "toy", progress=False)["explained"] == 0
    assert wh.scalar("SELECT count(*) FROM scores") == 7 and wh.scalar("SELECT count(*) FROM explanations") == 7


def marked_tokens(text: str) -> list[str]:
    return [t.strip() for t in re.findall(r"<<(.*?)>>", text)]


class ScriptedLLM:
    """Explains a feature by its most frequent marked token and simulates 8 when the token matches."""

    def __init__(self):
        self.fail_explaining = None  # token whose explain calls always fail
        self.fail_simulating = None  # token whose simulate calls fail after 3 successes
        self.simulated = Counter()

    def __call__(self, request: dict, n: int):
        content = request["messages"][1]["content"]
        if request["max_tokens"] > 1:
            token = Counter(marked_tokens(content)).most_common(1)[0][0]
            if token == self.fail_explaining:
                return (500, "overloaded")
            return chat_reply(f' the token "{token}".', usage=(200, 8))
        explained = re.search(r'token "(.*?)"', content).group(1)
        if explained == self.fail_simulating:
            self.simulated[explained] += 1
            if self.simulated[explained] > 3:
                return (502, "bad gateway")
        hit = marked_tokens(content.split("Text:")[1])[0] == explained
        return chat_reply("8" if hit else "0", {"8": math.log(0.9 if hit else 0.1), "0": math.log(0.1 if hit else 0.9)})


def test_openai_run_is_resumable_and_never_half_writes(interp_warehouse, chat_server):
    wh = interp_warehouse
    llm = chat_server.reply = ScriptedLLM()
    llm.fail_explaining, llm.fail_simulating = "end", "return"  # features 0 and 6
    backend = OpenAIBackend("scripted", base_url=chat_server.base_url, max_retries=1, backoff=0.01)
    result = score(wh, "toy", backend=backend, concurrency=3, progress=False)
    assert set(result["failed"]) == {0, 6} and "HTTP 500" in result["failed"][0] and "HTTP 502" in result["failed"][6]
    assert sorted(wh.query("SELECT feature FROM explanations").column(0).to_pylist()) == [1, 2, 3, 4, 5, 6]
    assert sorted(wh.query("SELECT feature FROM scores").column(0).to_pylist()) == [1, 2, 3, 4, 5]
    assert wh.scalar("SELECT count(*) FROM simulations s JOIN scores c ON c.id = s.score_id WHERE c.feature = 6") == 0
    assert wh.scalar("SELECT min(prompt_tokens) FROM explanations") == 200
    assert wh.scalar("SELECT count(DISTINCT how) FROM simulations WHERE how = 'logprobs'") == 1
    # the three successful calls of failed feature 6 were cached
    assert wh.scalar(
        "SELECT count(*) FROM llm_cache WHERE task = 'simulate' AND contains(request->'messages'->1->>'content', ?)",
        ['token "return"'],
    ) == 3

    # rerun against a healthy endpoint: only the missing calls are made
    llm.fail_explaining = llm.fail_simulating = None
    n_scored = dict((r["feature"], r["n"]) for r in wh.query(
        "SELECT feature, count(*) AS n FROM explanation_samples WHERE sae = 'toy' AND kind IN"
        " ('heldout_top', 'heldout_random', 'zero') GROUP BY feature").to_pylist())
    before = len(chat_server.requests)
    again = score(wh, "toy", backend=backend, concurrency=3, progress=False)
    assert again["failed"] == {} and (again["scored"], again["already_scored"]) == (2, 5)
    assert len(chat_server.requests) - before == 1 + n_scored[0] + n_scored[6] - 3
    assert wh.scalar("SELECT score FROM scores WHERE feature = 0") > 0.9  # "end" explained, simulated from logprobs


def test_scoring_stored_explanations_with_another_simulator(interp_warehouse, chat_server):
    wh = interp_warehouse
    chat_server.reply = ScriptedLLM()
    explain(wh, "toy", features=[0, 2], backend=OpenAIBackend("scripted", base_url=chat_server.base_url), progress=False)
    result = score(wh, "toy", features=[0, 2], explainer="openai:scripted", progress=False)
    assert (result["explainer"], result["simulator"], result["scored"]) == ("openai:scripted", "builtin", 2)
    assert result["mean_score"] > 0.5  # the builtin simulator reads the quoted token of an LLM sentence
    with pytest.raises(FeatstoreError, match="no explanations by 'openai:other'"):
        score(wh, "toy", features=[0], explainer="openai:other", progress=False)


def test_transfer_scores_parent_explanations_on_child_features(interp_warehouse):
    wh = interp_warehouse
    result = transfer(wh, "toy", "toy_child", progress=False)
    assert result["pairs"] == 4 and not result["failed"]  # parent features 0, 1, 2, 6 match at r >= 0.8
    rows = wh.query("SELECT * FROM explanation_transfer ORDER BY parent_feature").to_pylist()
    assert [(r["parent_feature"], r["child_feature"]) for r in rows] == [(0, 10), (1, 11), (2, 12), (6, 16)]
    assert all(r["transfer_score"] > 0.8 and r["parent_score"] > 0.8 and r["child_score"] > 0.8 for r in rows)
    assert rows[0]["parent_model"] == "base" and rows[0]["child_model"] == "child"
    assert transfer(wh, "toy", "toy_child", threshold=0.3, progress=False)["pairs"] == 7
    with pytest.raises(FeatstoreError, match="no cofiring correlation run"):
        transfer(wh, "toy", "toy_child", stat="cofiring", progress=False)


def test_score_views(interp_warehouse):
    wh = interp_warehouse
    shuffled_baseline(wh, "toy", progress=False)
    summary = {r["kind"]: r for r in wh.query("SELECT * FROM score_summary").to_pylist()}
    assert summary["self"]["model"] == "base" and summary["self"]["features"] == 7
    assert summary["self"]["mean_score"] > summary["shuffled"]["mean_score"]
    histogram = wh.query("SELECT * FROM score_distribution WHERE kind = 'self'").to_pylist()
    assert sum(r["features"] for r in histogram) == 7
    assert all(-1.0 <= r["bin_start"] <= 0.9 for r in histogram)
    assert wh.scalar("SELECT count(*) FROM feature_explanations WHERE score IS NOT NULL") == 7


def test_cli_explain_score_and_transfer(interp_warehouse):
    wh = interp_warehouse
    out = run_cli(wh, "explain", "toy", "--features", "0,6")
    assert out.exit_code == 0, out.output
    assert "2 explained by builtin" in out.output and '"return" (strongly)' in out.output
    out = run_cli(wh, "score", "toy", "--baseline")
    assert out.exit_code == 0, out.output
    own, shuffled = (float(x) for x in re.findall(r"explanations: +([+-]\d\.\d+)", out.output))
    assert own > shuffled
    out = run_cli(wh, "transfer", "toy", "toy_child")
    assert out.exit_code == 0, out.output
    assert "4 matched features at r >= 0.8" in out.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["explain", "toy", "--features", "2,99"], 1, "error: feature(s) 99 of SAE 'toy' never fire"),
        (["explain", "toy", "--features", "two"], 2, "not a comma-separated list"),
        (["score", "missing"], 1, "error: no activations for SAE 'missing'"),
        (["explain", "toy", "--backend", "openai"], 1, "error: the openai backend needs --model"),
        (["transfer", "toy", "toy_child", "--threshold", "0.99"], 1, "error: no feature of 'toy' matches"),
    ],
)
def test_cli_refuses_bad_input_and_leaves_the_warehouse_alone(interp_warehouse, monkeypatch, args, code, message):
    monkeypatch.delenv("FEATSTORE_LLM_MODEL", raising=False)
    out = run_cli(interp_warehouse, *args)
    assert out.exit_code == code and message in out.output
    counts = [interp_warehouse.scalar(f"SELECT count(*) FROM {t}")
              for t in ("explanation_samples", "explanations", "scores", "simulations", "llm_cache")]
    assert counts == [0, 0, 0, 0, 0]


def test_figure6_gives_persisting_and_other_score_distributions_of_an_edge(interp_warehouse):
    wh = interp_warehouse
    score(wh, "toy", progress=False)
    score(wh, "toy_child", progress=False)
    rows = wh.query("SELECT * FROM figure6 WHERE parent = 'base' AND child = 'child'").to_pylist()
    groups = {(r["side"], r["persisting"]): r for r in rows}
    assert set(groups) == {("parent", True), ("parent", False), ("child", True), ("child", False)}
    assert groups["parent", True]["features"] == 4 and groups["parent", False]["features"] == 3  # 0,1,2,6 | 3,4,5
    assert groups["child", False]["features"] == 4  # 13, 14, 15 and the emerging 20
    own = {r["feature"]: r["score"] for r in wh.query("SELECT feature, score FROM scores WHERE sae = 'toy'").to_pylist()}
    assert groups["parent", True]["scores"] == pytest.approx(sorted(own[f] for f in (0, 1, 2, 6)))
    loose = wh.query("SELECT count(*) AS n FROM persistence_scores(threshold := 0.3) WHERE side = 'parent' AND persisting")
    assert loose.column(0)[0].as_py() == 7
