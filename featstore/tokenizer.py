"""Tokenizers: train a small byte-level BPE, load any HF tokenizer folder or hub id, fingerprint it.

All models that are compared share one tokenizer; its fingerprint is what the warehouse checks
before joining two models' activations on the same token occurrences.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from featstore.errors import FeatstoreError

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
