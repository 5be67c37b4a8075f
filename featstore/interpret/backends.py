"""Explainers and simulators behind one interface: `explain(samples)` and `simulate(explanation, samples)`.

- `builtin`: offline and deterministic. It names the tokens that drive a feature, how strongly, their
  token classes and a preceding token that triggers it; its simulator reads such a sentence back
  (quoted tokens, strength words, class names, "right after") and applies it to a token in context.
- `openai`: any OpenAI-compatible `/chat/completions` endpoint (vLLM, llama.cpp, Ollama, hosted).
  The simulator takes the expected value over the digit 0-9 log-probabilities of a one-token reply.
- `hf`: a local transformers causal LM folder, with the same prompts and expected-value simulator.

The LLM backends share the paper's prompts, a response cache keyed by a hash of the request,
retries with exponential backoff on 429/5xx/timeouts/malformed replies, and token counts.
"""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import os
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from featstore.errors import FeatstoreError
from featstore.interpret.sampling import Sample

BACKENDS = ("builtin", "openai", "hf")
PROMPT_VERSION = "v1"
BUILTIN_VERSION = "builtin-v1"
EXPLANATION_START = "This feature looks mainly for"

LUA_KEYWORDS = {
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
}
KEYWORDS = LUA_KEYWORDS | set(keyword.kwlist) | set(keyword.softkwlist)
# Class names as they appear in explanations.
TOKEN_CLASSES = (
    "capitalised words", "lowercase words", "line breaks", "whitespace", "punctuation", "keywords", "digits",
)
STRENGTHS = {"strongly": 8.0, "moderately": 5.0, "weakly": 2.0}
UNQUALIFIED_STRENGTH = 6.0  # a quoted token with no strength word
CONTEXT_STRENGTH = 7.0
CLASS_STRENGTH = 2.0


@dataclass(frozen=True)
class Explanation:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Prediction:
    """A simulated activation on the 0-9 scale, and how it was obtained (rule | logprobs | sampled)."""

    value: float
    how: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Backend(Protocol):
    name: str  # stored as explainer / simulator: builtin | openai:<model> | hf:<folder name>
    prompt_version: str

    def explain(self, samples: Sequence[Sample]) -> Explanation: ...

    def simulate(self, explanation: str, samples: Sequence[Sample]) -> list[Prediction]: ...


class ResponseCache(Protocol):
    """Where LLM backends keep replies: `get` many keys at once, `put` one reply."""

    def get(self, keys: list[str]) -> dict[str, tuple[dict, int, int]]: ...

    def put(self, key: str, backend: str, task: str, request: dict, result: dict, prompt_tokens: int,
            completion_tokens: int) -> None: ...


# -- token words shared by explainers and simulators ---------------------------------------------


def token_key(text: str) -> str:
    """A token as explanations quote it: stripped, unless it is only whitespace."""
    return text.strip() or text


def token_class(text: str) -> str:
    """The class an explanation may name for a token."""
    stripped = text.strip()
    if not stripped:
        return "line breaks" if "\n" in text else "whitespace"
    if stripped.isdigit():
        return "digits"
    if not any(c.isalnum() or c == "_" for c in stripped):
        return "punctuation"
    if stripped in KEYWORDS:
        return "keywords"
    if stripped[0].isupper():
        return "capitalised words"
    return "lowercase words"


def previous_word(before: str) -> str:
    """The last word or punctuation mark before a target token: the context the builtin backend reads."""
    match = re.search(r"(\w+|[^\w\s])\s*$", before)
    return match.group(1) if match else ""


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# -- builtin ---------------------------------------------------------------------------------------


class BuiltinBackend:
    """Deterministic, offline explanations and simulations from token statistics of the examples."""

    name = "builtin"
    prompt_version = BUILTIN_VERSION
    max_tokens = 6

    def explain(self, samples: Sequence[Sample]) -> Explanation:
        firing = [s for s in samples if s.act > 0]
        if not firing:
            return Explanation(f"{EXPLANATION_START} nothing: it never fires on these examples.")
        bins: dict[str, list[int]] = defaultdict(list)
        for s in samples:  # non-firing occurrences of a token lower its mean: the token alone is not enough
            bins[token_key(s.token)].append(s.bin if s.act > 0 else 0)
        mass = Counter()
        for s in firing:
            mass[token_key(s.token)] += s.act
        groups: dict[str, list[str]] = defaultdict(list)
        for key, _ in mass.most_common(self.max_tokens):
            mean_bin = sum(bins[key]) / len(bins[key])
            strength = "strongly" if mean_bin >= 6 else "moderately" if mean_bin >= 3 else "weakly"
            groups[strength].append(json.dumps(key, ensure_ascii=False))
        parts = [f"{_join(groups[strength])} ({strength})" for strength in STRENGTHS if groups[strength]]
        text = f"{EXPLANATION_START} {', '.join(parts)}"
        classes = self._main_classes(firing)
        if classes:
            text += f"; these are mostly {_join(classes)}"
        trigger = self._trigger(samples)
        if trigger is not None:
            text += f". It fires most right after {json.dumps(trigger, ensure_ascii=False)}"
        return Explanation(text + ".")

    @staticmethod
    def _main_classes(firing: Sequence[Sample]) -> list[str]:
        weight = Counter()
        for s in firing:
            weight[token_class(s.token)] += s.act
        total = sum(weight.values())
        return [c for c, w in weight.most_common() if w >= 0.3 * total]

    @staticmethod
    def _trigger(samples: Sequence[Sample]) -> str | None:
        """A preceding word shared by most top examples and rare before non-firing ones."""
        top = [s for s in samples if s.kind == "top" and s.act > 0]
        if len(top) < 3:
            return None
        word, count = Counter(previous_word(s.before) for s in top).most_common(1)[0]
        silent = [s for s in samples if s.act == 0]
        silent_share = sum(previous_word(s.before) == word for s in silent) / max(len(silent), 1)
        if word and count >= 0.6 * len(top) and silent_share < 0.2:
            return word
        return None

    def simulate(self, explanation: str, samples: Sequence[Sample]) -> list[Prediction]:
        rules = read_explanation(explanation)
        return [Prediction(rules.predict(s), "rule") for s in samples]


@dataclass
class ExplanationRules:
    """What the builtin simulator reads from an explanation sentence."""

    tokens: dict[str, float]
    classes: set[str]
    triggers: set[str]

    def predict(self, sample: Sample) -> float:
        value = self.tokens.get(token_key(sample.token), 0.0)
        if previous_word(sample.before) in self.triggers:
            value = max(value, CONTEXT_STRENGTH)
        if token_class(sample.token) in self.classes:
            value = max(value, CLASS_STRENGTH)
        return value


def read_explanation(text: str) -> ExplanationRules:
    """Quoted tokens take the strength word that follows them; those after "after" are triggers."""
    tokens: dict[str, float] = {}
    triggers: set[str] = set()
    pending: list[str] = []
    after = False
    pattern = r'"(?:[^"\\]|\\.)*"|\b(?:strongly|moderately|weakly|after)\b|[;.](?:\s|$)'
    for match in re.finditer(pattern, text):
        word = match.group(0)
        if word.startswith('"'):
            try:
                token = json.loads(word)
            except json.JSONDecodeError:
                token = word.strip('"')
            if after:
                triggers.add(token)
            else:
                pending.append(token)
        elif word in STRENGTHS:
            tokens.update({t: STRENGTHS[word] for t in pending})
            pending = []
        elif word == "after":
            after = True
        else:  # end of a clause
            tokens.update({t: UNQUALIFIED_STRENGTH for t in pending})
            pending, after = [], False
    tokens.update({t: UNQUALIFIED_STRENGTH for t in pending})
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', "", text.lower())
    classes = {name for name in TOKEN_CLASSES if re.search(rf"\b{name}\b", unquoted)}
    return ExplanationRules(tokens, classes, triggers)


# -- prompts of the LLM backends -----------------------------------------------------------------

EXPLAIN_SYSTEM = (
    "We are studying features of a sparse autoencoder trained on a language model. Each feature "
    "looks for some particular thing in a short piece of text. You see example texts with one token "
    "marked like <<this>> and the feature's activation on it, from 0 (off) to 9 (maximal). Say in one "
    "short sentence what the feature looks for. Do not list every example."
)
SIMULATE_SYSTEM = (
    "We are studying features of a sparse autoencoder trained on a language model. Given an "
    "explanation of what a feature looks for and a text with one token marked like <<this>>, predict "
    "the feature's activation on the marked token, from 0 (off) to 9 (maximal). Most tokens are 0. "
    "Answer with a single digit."
)


def marked(sample: Sample) -> str:
    return f"{sample.before}<<{sample.token}>>{sample.after}".replace("\n", "\\n")


def explain_messages(samples: Sequence[Sample]) -> list[dict]:
    lines = [f"Example {i}: {marked(s)}\nActivation: {s.bin if s.act > 0 else 0}" for i, s in enumerate(samples, 1)]
    user = "\n\n".join(lines) + f'\n\nComplete the sentence "{EXPLANATION_START} …".'
    return [
        {"role": "system", "content": EXPLAIN_SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": EXPLANATION_START},
    ]


def simulate_messages(explanation: str, sample: Sample) -> list[dict]:
    target = sample.token.replace("\n", "\\n")
    user = f"Explanation: {explanation}\n\nText: {marked(sample)}\n\nActivation on <<{target}>> (0-9):"
    return [{"role": "system", "content": SIMULATE_SYSTEM}, {"role": "user", "content": user}]


def finish_explanation(reply: str) -> str:
    """The explanation sentence, starting with EXPLANATION_START whether or not the model repeated it."""
    text = " ".join(reply.split())
    if text.lower().startswith(EXPLANATION_START.lower()):
        text = text[len(EXPLANATION_START):].strip()
    if not text:
        raise MalformedReply("empty explanation")
    return f"{EXPLANATION_START} {text}"


def digit_probabilities(logprobs: dict[str, float]) -> dict[int, float]:
    """Probability mass per digit among (token -> logprob) alternatives; ' 7' and '7' both count as 7."""
    probs: dict[int, float] = defaultdict(float)
    for token, logprob in logprobs.items():
        if len(token.strip()) == 1 and token.strip().isdigit():
            probs[int(token.strip())] += math.exp(logprob)
    return probs


def expected_digit(probs: dict[int, float]) -> float | None:
    """Expected value over digits 0-9 of (digit -> probability), renormalised; None when empty."""
    total = sum(probs.values())
    return sum(d * p for d, p in probs.items()) / total if total > 0 else None


class MalformedReply(Exception):
    """A reply without the content a task needs; retried like a transient failure."""


class LLMBackend:
    """Shared by openai and hf: prompts, cache and the explain/simulate protocol over `_complete`."""

    name: str
    prompt_version = PROMPT_VERSION

    def __init__(self, cache: ResponseCache | None = None):
        self.cache = cache

    def _complete(self, task: str, messages: list[dict]) -> tuple[dict, int, int]:
        """One call: ({"text"} or {"value", "how"}, prompt tokens, completion tokens)."""
        raise NotImplementedError

    def _run(self, task: str, requests: list[list[dict]]) -> list[tuple[dict, int, int]]:
        keys = [self._key(task, messages) for messages in requests]
        found = self.cache.get(keys) if self.cache else {}
        replies = []
        for key, messages in zip(keys, requests, strict=True):
            if key not in found:
                found[key] = self._complete(task, messages)
                if self.cache:
                    self.cache.put(key, self.name, task, {"messages": messages}, *found[key])
            replies.append(found[key])
        return replies

    def _key(self, task: str, messages: list[dict]) -> str:
        request = {"backend": self.name, "version": self.prompt_version, "task": task, "messages": messages}
        return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()

    def explain(self, samples: Sequence[Sample]) -> Explanation:
        (result, prompt_tokens, completion_tokens), = self._run("explain", [explain_messages(samples)])
        return Explanation(result["text"], prompt_tokens, completion_tokens)

    def simulate(self, explanation: str, samples: Sequence[Sample]) -> list[Prediction]:
        replies = self._run("simulate", [simulate_messages(explanation, s) for s in samples])
        return [Prediction(r["value"], r["how"], p, c) for r, p, c in replies]


# -- openai ------------------------------------------------------------------------------------------


class OpenAIBackend(LLMBackend):
    """An OpenAI-compatible chat-completions endpoint; the key comes from an environment variable."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        cache: ResponseCache | None = None,
    ):
        import httpx

        super().__init__(cache)
        self.name = f"openai:{model}"
        self.model = model
        self.max_retries = max_retries
        self.backoff = backoff
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def _complete(self, task: str, messages: list[dict]) -> tuple[dict, int, int]:
        if task == "explain":
            payload = {"model": self.model, "messages": messages, "max_tokens": 80, "temperature": 0}
        else:
            payload = {
                "model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0,
                "logprobs": True, "top_logprobs": 10,
            }
        reply = self._post(payload, task)
        usage = reply.get("usage") or {}
        return reply["result"], int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)

    def _post(self, payload: dict, task: str) -> dict:
        """POST with retries: 429, 5xx, timeouts, dropped connections and malformed replies back off and retry."""
        import httpx

        problem = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self.client.post("/chat/completions", json=payload)
            except httpx.TimeoutException:
                problem = "timed out"
                continue
            except httpx.TransportError as exc:
                problem = f"connection failed ({exc})"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise FeatstoreError(
                    f"{self.name} refused the request: HTTP {response.status_code} {response.text[:200]!r}; "
                    "check --model, --base-url and the API key"
                )
            try:
                reply = response.json()
                reply["result"] = parse_reply(task, reply)
                return reply
            except (ValueError, KeyError, IndexError, TypeError, MalformedReply) as exc:
                problem = f"malformed reply ({exc})"
        raise FeatstoreError(f"{self.name} failed after {self.max_retries + 1} tries: {problem}")


def parse_reply(task: str, reply: dict) -> dict:
    """{"text"} for explain; {"value", "how"} for simulate, from logprobs else from the sampled digit."""
    choice = reply["choices"][0]
    content = (choice.get("message") or {}).get("content") or ""
    if task == "explain":
        return {"text": finish_explanation(content)}
    entries = ((choice.get("logprobs") or {}).get("content") or [])
    if entries:
        first = entries[0]
        options = {o["token"]: o["logprob"] for o in first.get("top_logprobs") or []}
        options.setdefault(first["token"], first["logprob"])
        value = expected_digit(digit_probabilities(options))
        if value is not None:
            return {"value": value, "how": "logprobs"}
    digit = re.search(r"\d", content)
    if digit is None:
        raise MalformedReply(f"no digit in {content[:40]!r}")
    return {"value": float(digit.group(0)), "how": "sampled"}


# -- hf ---------------------------------------------------------------------------------------------


class HFBackend(LLMBackend):
    """A local transformers causal LM folder: greedy explanations, expected-value simulations."""

    def __init__(self, folder: str | Path, *, device: str | None = None, max_new_tokens: int = 40,
                 cache: ResponseCache | None = None):
        folder = Path(folder)
        if not (folder / "config.json").exists():
            raise FeatstoreError(f"{folder} is not a transformers model folder (no config.json); give --model FOLDER")
        from transformers import AutoTokenizer

        from featstore.models.hf import load_model, resolve_device

        super().__init__(cache)
        self.name = f"hf:{folder.resolve().name}"
        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = load_model(folder, self.device)
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()  # one forward pass at a time; threads only overlap cache work
        self.digit_ids = self._digit_ids()

    def _digit_ids(self) -> dict[int, int]:
        """Token id -> digit, for the bare and the space-prefixed digit where each is one token."""
        ids = {}
        for digit in range(10):
            for text in (str(digit), f" {digit}"):
                encoded = self.tokenizer.encode(text, add_special_tokens=False)
                if len(encoded) == 1:
                    ids[encoded[0]] = digit
        if not ids:
            raise FeatstoreError(f"{self.name}: its tokenizer has no single-token digits; it cannot simulate")
        return ids

    def _prompt_ids(self, messages: list[dict]):
        prefilled = messages[-1]["role"] == "assistant"
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=not prefilled, continue_final_message=prefilled
            )
        else:
            text = "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)
            if not prefilled:
                text += "\n\nAssistant:"
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        room = getattr(self.model.config, "max_position_embeddings", 2048) - self.max_new_tokens
        return ids[:, -room:].to(self.device)

    def _complete(self, task: str, messages: list[dict]) -> tuple[dict, int, int]:
        import torch

        ids = self._prompt_ids(messages)
        with self.lock, torch.no_grad():
            if task == "explain":
                out = self.model.generate(
                    ids, attention_mask=torch.ones_like(ids), max_new_tokens=self.max_new_tokens, do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                )
                new = out[0, ids.shape[1]:]
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                return {"text": finish_explanation(text or "something it does not say")}, ids.shape[1], len(new)
            logprobs = torch.log_softmax(self.model(ids).logits[0, -1].float(), dim=-1)
        probs: dict[int, float] = defaultdict(float)
        for token_id, digit in self.digit_ids.items():
            probs[digit] += math.exp(logprobs[token_id].item())
        return {"value": expected_digit(probs), "how": "logprobs"}, ids.shape[1], 0


def make_backend(
    kind: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    timeout: float = 60.0,
    max_retries: int = 5,
    device: str | None = None,
    cache: ResponseCache | None = None,
) -> Backend:
    """A backend by kind; `model` is the endpoint's model name (openai) or a model folder (hf)."""
    if kind == "builtin":
        return BuiltinBackend()
    if kind == "openai":
        model = model or os.environ.get("FEATSTORE_LLM_MODEL")
        if not model:
            raise FeatstoreError("the openai backend needs --model NAME (or FEATSTORE_LLM_MODEL)")
        return OpenAIBackend(model, base_url=base_url, api_key_env=api_key_env, timeout=timeout,
                             max_retries=max_retries, cache=cache)
    if kind == "hf":
        if not model:
            raise FeatstoreError("the hf backend needs --model FOLDER (a local transformers causal LM)")
        return HFBackend(model, device=device, cache=cache)
    raise FeatstoreError(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)}")
