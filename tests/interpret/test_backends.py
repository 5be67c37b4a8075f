"""Backends: the builtin rules, the openai client against a real in-test HTTP server, the hf backend."""

from __future__ import annotations

import math
import time

import pytest
from helpers import chat_reply

from featstore.errors import FeatstoreError
from featstore.interpret.backends import (
    EXPLANATION_START,
    BuiltinBackend,
    HFBackend,
    OpenAIBackend,
    make_backend,
    read_explanation,
    token_class,
)
from featstore.interpret.sampling import Sample


def sample(token: str, act: float = 0.0, bin: int = 0, before: str = " x =", kind: str = "top") -> Sample:
    return Sample(tok=0, kind=kind, act=act, bin=bin, before=before, token=token, after=" y")


def test_token_classes():
    assert [token_class(t) for t in (" end", "(", " 42", "\n", "  ", " Tom", " cat", " def")] == [
        "keywords", "punctuation", "digits", "line breaks", "whitespace", "capitalised words", "lowercase words",
        "keywords",
    ]


def test_builtin_explains_tokens_strengths_classes_and_triggers():
    backend = BuiltinBackend()
    samples = [sample(" end", 4.0, 9)] * 6 + [sample(" then", 2.0, 4)] * 3 + [sample(" end", 0.0, 0, kind="top_token")]
    text = backend.explain(samples).text
    assert text.startswith(EXPLANATION_START)
    assert '"end" (strongly)' in text and '"then" (moderately)' in text and "keywords" in text
    assert backend.explain(samples).text == text  # deterministic

    after_local = [sample(t, 5.0, 9, before=" if local", kind="top") for t in (" x", " y", " z", " n")]
    silent = [sample(" x", 0.0, 0, before=" print", kind="top_token")] * 5
    assert 'right after "local"' in backend.explain(after_local + silent).text


def test_builtin_simulator_reads_explanations_back():
    rules = read_explanation(
        'This feature looks mainly for "end" (strongly), "(" and ")" (moderately), "x" (weakly); '
        'these are mostly keywords. It fires most right after "local".'
    )
    assert rules.tokens == {"end": 8.0, "(": 5.0, ")": 5.0, "x": 2.0}
    assert rules.triggers == {"local"} and rules.classes == {"keywords"}
    predictions = BuiltinBackend().simulate(
        "This feature looks mainly for \"end\" (strongly). It fires most right after \"local\".",
        [sample(" end"), sample(" y", before=" local"), sample(" while"), sample(" cat")],
    )
    assert [p.value for p in predictions] == [8.0, 7.0, 0.0, 0.0]
    assert {p.how for p in predictions} == {"rule"}
    # an LLM's free-form sentence is read too: class names, and quoted tokens without a strength word
    loose = read_explanation('This feature looks mainly for punctuation, especially the token "(" in calls.')
    assert loose.tokens == {"(": 6.0} and loose.classes == {"punctuation"}


def openai(server, **kwargs) -> OpenAIBackend:
    return OpenAIBackend("test-model", base_url=server.base_url, backoff=0.01, **kwargs)


def test_openai_explains_and_simulates_from_logprobs(chat_server, monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sekret")
    chat_server.reply = lambda req, n: (
        chat_reply(" the keyword end that closes Lua blocks.", usage=(120, 9)) if req.get("max_tokens", 0) > 1
        else chat_reply("7", {"7": math.log(0.5), "3": math.log(0.25), " 9": math.log(0.25), "x": math.log(0.1)})
    )
    backend = openai(chat_server, api_key_env="TEST_LLM_KEY")
    explanation = backend.explain([sample(" end", 4.0, 9)])
    assert explanation.text == f"{EXPLANATION_START} the keyword end that closes Lua blocks."
    assert (explanation.prompt_tokens, explanation.completion_tokens) == (120, 9)
    [prediction] = backend.simulate(explanation.text, [sample(" end")])
    assert prediction.how == "logprobs"
    assert prediction.value == pytest.approx((7 * 0.5 + 3 * 0.25 + 9 * 0.25) / 1.0)
    first, second = chat_server.requests
    assert "<< end>>" in first["messages"][1]["content"] and first["model"] == "test-model"
    assert second["logprobs"] is True and second["max_tokens"] == 1
    assert chat_server.headers[0]["Authorization"] == "Bearer sekret"


def test_openai_falls_back_to_the_sampled_digit(chat_server):
    chat_server.reply = lambda req, n: chat_reply("6")  # an endpoint that ignores logprobs
    [prediction] = openai(chat_server).simulate("This feature looks mainly for x.", [sample(" x")])
    assert (prediction.value, prediction.how) == (6.0, "sampled")


def test_openai_retries_429_and_500_then_succeeds(chat_server):
    chat_server.reply = lambda req, n: {1: (429, "{}"), 2: (500, "oops"), 3: (503, "")}.get(n) or chat_reply("4")
    [prediction] = openai(chat_server).simulate("e", [sample(" x")])
    assert prediction.value == 4.0 and len(chat_server.requests) == 4


def test_openai_retries_malformed_replies(chat_server):
    bad = {1: (200, "not json"), 2: (200, '{"choices": []}'), 3: chat_reply("no digit here")}
    chat_server.reply = lambda req, n: bad.get(n) or chat_reply("2")
    [prediction] = openai(chat_server).simulate("e", [sample(" x")])
    assert prediction.value == 2.0 and len(chat_server.requests) == 4


def test_openai_times_out_then_succeeds(chat_server):
    chat_server.reply = lambda req, n: 1.0 if n == 1 else chat_reply("5")
    start = time.monotonic()
    [prediction] = openai(chat_server, timeout=0.2).simulate("e", [sample(" x")])
    assert prediction.value == 5.0 and len(chat_server.requests) == 2
    assert time.monotonic() - start < 1.0


@pytest.mark.parametrize(
    "reply, message",
    [
        (lambda req, n: (500, "down"), "failed after 3 tries: HTTP 500"),
        (lambda req, n: chat_reply("no digits"), "failed after 3 tries: malformed reply"),
        (lambda req, n: 1.0, "failed after 3 tries: timed out"),
    ],
)
def test_openai_gives_up_after_its_retries(chat_server, reply, message):
    chat_server.reply = reply
    with pytest.raises(FeatstoreError, match=message):
        openai(chat_server, timeout=0.2, max_retries=2).simulate("e", [sample(" x")])
    assert len(chat_server.requests) == 3


def test_openai_does_not_retry_a_refusal(chat_server):
    chat_server.reply = lambda req, n: (401, '{"error": "bad key"}')
    with pytest.raises(FeatstoreError, match="refused the request: HTTP 401"):
        openai(chat_server).explain([sample(" x", 1.0, 9)])
    assert len(chat_server.requests) == 1


def test_openai_replies_come_from_the_cache(chat_server):
    class DictCache:
        def __init__(self):
            self.rows = {}

        def get(self, keys):
            return {k: self.rows[k] for k in keys if k in self.rows}

        def put(self, key, backend, task, request, result, prompt_tokens, completion_tokens):
            self.rows[key] = (result, prompt_tokens, completion_tokens)

    chat_server.reply = lambda req, n: chat_reply("3")
    cache = DictCache()
    texts = [sample(" a"), sample(" b"), sample(" a")]
    first = openai(chat_server, cache=cache).simulate("e", texts)
    again = openai(chat_server, cache=cache).simulate("e", texts)
    assert first == again and len(chat_server.requests) == 2  # one call per distinct prompt, none on the rerun


def test_make_backend_refuses_bad_choices(tmp_path):
    assert make_backend("builtin").name == "builtin"
    with pytest.raises(FeatstoreError, match="unknown backend 'gpt'"):
        make_backend("gpt")
    with pytest.raises(FeatstoreError, match="needs --model"):
        make_backend("hf")
    with pytest.raises(FeatstoreError, match="not a transformers model folder"):
        make_backend("hf", model=str(tmp_path))


def test_hf_backend_explains_and_simulates_with_a_local_model(tiny_model_dir):
    backend = make_backend("hf", model=str(tiny_model_dir), device="cpu")
    assert isinstance(backend, HFBackend) and backend.name == f"hf:{tiny_model_dir.name}"
    explanation = backend.explain([sample(" end", 4.0, 9), sample(" then", 1.0, 2)])
    assert explanation.text.startswith(EXPLANATION_START) and explanation.prompt_tokens > 0
    predictions = backend.simulate(explanation.text, [sample(" end"), sample(" cat")])
    assert all(0.0 <= p.value <= 9.0 and p.how == "logprobs" for p in predictions)
    assert predictions[0].value != predictions[1].value  # the context changes the digit distribution
