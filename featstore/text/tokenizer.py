"""Tokenizers: train a small byte-level BPE, load any HF tokenizer folder or hub id, fingerprint it.

All models that are compared share one tokenizer; its fingerprint is what the warehouse checks
before joining two models' activations on the same token occurrences.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path):
    """Train a byte-level BPE on `texts` and save it as an HF tokenizer folder; returns it loaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return load_tokenizer(out_dir)


def load_tokenizer(name_or_path: str | Path):
    """Load a tokenizer from an HF folder or hub id, refusing degenerate vocabularies.

    transformers 5 can silently build a 3-token tokenizer from a bad vocab file, so the size is checked.
    """
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(name_or_path))
    except (OSError, ValueError) as exc:
        raise FeatstoreError(
            f"cannot load tokenizer {str(name_or_path)!r}: {str(exc).splitlines()[0]}; give an HF tokenizer folder or hub id"
        ) from exc
    if len(tok) < 32:
        raise FeatstoreError(
            f"tokenizer {str(name_or_path)!r} loaded with only {len(tok)} tokens; its files are not a usable vocabulary"
        )
    return tok


def fingerprint(tok) -> str:
    """A short hash of what decides tokenization: the backend's model (vocab + merges) and pre-tokenizer."""
    spec = json.loads(tok.backend_tokenizer.to_str()) if getattr(tok, "is_fast", False) else {"vocab": tok.get_vocab()}
    keep = {k: spec.get(k) for k in ("model", "pre_tokenizer", "normalizer", "added_tokens")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def vocab_rows(tok) -> list[tuple[int, str, str]]:
    """(token_id, raw token, decoded text) for every id, for the warehouse `vocab` table."""
    ids = range(len(tok))
    raw = tok.convert_ids_to_tokens(list(ids))
    return [(i, r if r is not None else "", tok.decode([i])) for i, r in zip(ids, raw)]


# -- the paper's tokenizer ----------------------------------------------------------------------

MISTRAL_TOKENIZER = ("data", "tokenizer.model.v1")  # Mistral-7B-v0.1's SentencePiece model inside mistral-common
MISTRAL_VOCAB_SIZE = 32000


def mistral_tokenizer_file() -> Path:
    """Where mistral-common keeps Mistral-7B-v0.1's tokenizer; found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise FeatstoreError(
            "the paper preset's tokenizer comes from the mistral-common package; install it with `pip install -e .[paper]`"
        )
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*MISTRAL_TOKENIZER)
    if not path.is_file():
        raise FeatstoreError(f"mistral-common is installed but has no {'/'.join(MISTRAL_TOKENIZER)}; reinstall it")
    return path


def load_mistral_tokenizer():
    """The paper's tokenizer: Mistral-7B-v0.1's SentencePiece BPE, 32,000 tokens."""
    tok = load_sentencepiece_bpe(mistral_tokenizer_file())
    if len(tok) != MISTRAL_VOCAB_SIZE:
        raise FeatstoreError(f"Mistral tokenizer loaded with {len(tok)} tokens instead of {MISTRAL_VOCAB_SIZE}")
    return tok


def load_sentencepiece_bpe(model_file: str | Path):
    """A SentencePiece BPE `.model` file as an HF fast tokenizer that encodes exactly like SentencePiece.

    transformers 5 builds Llama tokenizers from vocab + merges (given a `vocab_file` it silently makes a
    3-token one), so the merges are derived from the piece scores; the result is checked against
    SentencePiece itself on a probe text.
    """
    try:
        import sentencepiece
    except ImportError as exc:
        raise FeatstoreError("reading a SentencePiece model needs the sentencepiece package: `pip install -e .[paper]`") from exc
    from tokenizers import normalizers
    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    specials = {name: sp.id_to_piece(i) for name, i in (("unk_token", sp.unk_id()), ("bos_token", sp.bos_id()),
                                                        ("eos_token", sp.eos_id())) if i >= 0}
    try:
        from transformers.tokenization_utils_base import generate_merges
    except ImportError:  # transformers 4: the fast tokenizer converts the SentencePiece file itself
        from transformers import LlamaTokenizerFast

        tok = LlamaTokenizerFast(vocab_file=str(model_file), legacy=False)
    else:
        vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
        scores = {piece: sp.get_score(i) for piece, i in vocab.items()}
        tok = LlamaTokenizer(vocab=vocab, merges=generate_merges(vocab, scores), add_prefix_space=True, legacy=False)
        # SentencePiece always prepends "▁", also to text that starts with a space; Metaspace skips it there
        backend = tok.backend_tokenizer
        backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        backend.pre_tokenizer = None
        # a plain fast tokenizer, so a saved folder reloads from tokenizer.json as is (LlamaTokenizer rebuilds its own)
        tok = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token=specials.get("eos_token"), **specials)
    probe = "  def f(x):\n    return x  # ok\nlocal t = {1, 2}\n*MOT:\tlook at the doggie !\nOnce upon a time, Ünï 😀."
    if len(tok) != sp.get_piece_size() or tok(probe, add_special_tokens=False)["input_ids"] != sp.encode(probe):
        raise FeatstoreError(f"{model_file} did not convert to an equivalent HF tokenizer ({len(tok)} tokens)")
    return tok


def record_tokenizer(wh: Warehouse, con: duckdb.DuckDBPyConnection, tok, name: str) -> str:
    """Insert the tokenizer and its vocabulary once per fingerprint; returns the fingerprint."""
    fp = fingerprint(tok)
    if wh.tokenizers.exists(fp, con=con):
        return fp
    ids, raw, text = zip(*vocab_rows(tok))
    vocab = pa.table({"token_id": pa.array(ids, pa.int32()), "token": list(raw), "text": list(text)})
    return wh.tokenizers.record(con, fp, name, vocab)
