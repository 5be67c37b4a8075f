"""Corpus slices: tokenize a source once and store every token occurrence under a stable `tok` id.

A corpus owns the tok range [tok_start, tok_start + n_tokens); occurrences are numbered in
(doc_id, pos) order, so tok = tok_start + (tokens of the documents before doc_id) + pos. Tokens are
the text's own tokens (no BOS/EOS added); a model that wants a BOS adds it when it runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa

from featstore.errors import FeatstoreError
from featstore.text.tokenizer import record_tokenizer
from featstore.warehouse import Warehouse, check_name, remove_files

TOKENIZE_BATCH_DOCS = 32
READ_BLOCK_TOKENS = 1 << 20
MAX_TOK = 2**32 - 1  # tokens.tok is UINTEGER


def add_corpus(
    wh: Warehouse,
    name: str,
    source: str,
    tokenizer_path: str | Path,
    *,
    max_tokens: int | None = None,
    max_docs: int | None = None,
    part: str | None = None,
    text_key: str = "text",
    doc_tokens: int | None = None,
    min_docs: int | None = None,
    replace: bool = False,
) -> dict:
    """Tokenize `source` (see featstore.text.sources) into corpus `name`; returns the corpus row.

    With `part` ("train" or "validation") the text is that split of a source spec or mixture as
    featstore.text.mixtures defines it, i.e. the data a model was (or was not) trained on. `doc_tokens` keeps
    at most that many tokens of each document, so one long file cannot fill a slice; `min_docs` fails
    (before anything is written) when the slice would have fewer documents.
    """
    if max_docs is not None and not 0 < max_docs <= MAX_TOK:
        raise FeatstoreError(f"--max-docs must be between 1 and 2^32 (got {max_docs})")
    if part is not None:
        from featstore.text.mixtures import iter_texts

        texts = iter_texts(source, part=part, max_docs=max_docs)
        docs = ((f"{source}[{part}]#{i}", text) for i, text in enumerate(texts))
    else:
        from featstore.text.sources import iter_documents

        docs = iter_documents(source, text_key=text_key, max_docs=max_docs)
    meta = {"text_key": text_key, "max_docs": max_docs, "part": part, "doc_tokens": doc_tokens, "min_docs": min_docs}
    return add_corpus_texts(
        wh, name, docs, tokenizer_path, source_label=source, meta=meta, max_tokens=max_tokens, doc_tokens=doc_tokens,
        min_docs=min_docs, replace=replace,
    )


def add_corpus_texts(
    wh: Warehouse,
    name: str,
    docs: Iterable[tuple[str, str]],
    tokenizer_path: str | Path,
    *,
    source_label: str,
    meta: dict | None = None,
    max_tokens: int | None = None,
    doc_tokens: int | None = None,
    min_docs: int | None = None,
    replace: bool = False,
) -> dict:
    """Tokenize (origin, text) documents into corpus `name` in one transaction.

    Tokenizing happens before the warehouse is opened, so readers are not blocked meanwhile.
    `max_tokens` truncates the last document so the corpus has exactly that many tokens.
    `replace` drops the old slice with everything computed on it (`featstore.warehouse.tables.Corpora.drop`: its toks
    no longer exist) and gives the new slice a fresh tok range; without it an existing name is an error.
    """
    from featstore.text.tokenizer import load_tokenizer

    check_name("corpus", name)
    if max_tokens is not None and not 0 < max_tokens <= MAX_TOK:
        raise FeatstoreError(f"--max-tokens must be between 1 and 2^32, the warehouse's tok id range (got {max_tokens})")
    for option, value in (("doc-tokens", doc_tokens), ("min-docs", min_docs)):
        if value is not None and value <= 0:
            raise FeatstoreError(f"--{option} must be positive (got {value})")
    if not replace:
        _refuse_existing(wh, name)
    tok = load_tokenizer(tokenizer_path)
    documents, tokens = _tokenize(tok, docs, max_tokens, doc_tokens)
    n_tokens = len(tokens)
    if n_tokens == 0:
        raise FeatstoreError(f"source {source_label!r} gave no tokens; point --source at non-empty text")
    if min_docs is not None and documents.num_rows < min_docs:
        raise FeatstoreError(
            f"corpus {name!r} would have {documents.num_rows} documents, fewer than --min-docs {min_docs}; "
            "give more text, a lower --doc-tokens or fewer --max-tokens"
        )
    meta = {**(meta or {}), "max_tokens": max_tokens, "tokenizer_path": str(tokenizer_path)}
    with wh.transaction() as con:
        stale: list[Path] = []
        # Allocated before a replaced slice is dropped, so a tok id is never reused for another token.
        tok_start = wh.corpora.next_tok_start(con)
        if wh.corpora.exists(name, con=con):
            if not replace:
                raise FeatstoreError(f"corpus {name!r} already exists; use --replace to rebuild it")
            stale = wh.corpora.drop(name, con)
        fp = record_tokenizer(wh, con, tok, str(tokenizer_path))
        if tok_start + n_tokens > MAX_TOK:
            raise FeatstoreError(f"the warehouse's tok ids would pass 2^32 with {n_tokens} more tokens; use a new warehouse")
        record = {"name": name, "source": source_label, "tokenizer": fp, "n_documents": documents.num_rows,
                  "n_tokens": n_tokens, "tok_start": tok_start, "meta": meta}
        wh.corpora.insert_slice(con, record, documents, tokens)
    remove_files(stale)
    return get_corpus(wh, name)


def _refuse_existing(wh: Warehouse, name: str) -> None:
    """Fail before the (slow) tokenizing when the name is taken; checked again in the transaction."""
    if wh.exists() and wh.corpora.exists(name):
        raise FeatstoreError(f"corpus {name!r} already exists; use --replace to rebuild it")


def _tokenize(tok, docs: Iterable[tuple[str, str]], max_tokens: int | None,
              doc_tokens: int | None = None) -> tuple[pa.Table, pa.Table]:
    """Documents (doc_id, n_tokens, origin) and tokens (seq, doc_id, pos, token_id) as Arrow tables.

    Blank documents are skipped, so every stored document has at least one token; each keeps at most
    `doc_tokens` tokens.
    """
    from tqdm.auto import tqdm

    origins: list[str] = []
    lengths: list[int] = []
    ids: list[np.ndarray] = []
    total = 0
    start = time.monotonic()
    with tqdm(total=max_tokens, unit="tok", unit_scale=True, desc="tokenize") as bar:
        for batch in batched((doc for doc in docs if doc[1].strip()), TOKENIZE_BATCH_DOCS):
            encoded = tok([text for _, text in batch], add_special_tokens=False)["input_ids"]
            for (origin, _), token_ids in zip(batch, encoded):
                token_ids = token_ids[:doc_tokens]
                if max_tokens is not None:
                    token_ids = token_ids[: max_tokens - total]
                if not token_ids:
                    continue
                origins.append(origin)
                lengths.append(len(token_ids))
                ids.append(np.asarray(token_ids, dtype=np.int32))
                total += len(token_ids)
                bar.update(len(token_ids))
            bar.set_postfix(docs=len(origins), tok_per_s=f"{total / max(time.monotonic() - start, 1e-9):,.0f}")
            if max_tokens is not None and total >= max_tokens:
                break
    n_docs = len(lengths)
    length = np.asarray(lengths, dtype=np.int64)
    starts = np.cumsum(length) - length
    documents = pa.table({
        "doc_id": pa.array(np.arange(n_docs, dtype=np.int32)),
        "n_tokens": pa.array(length.astype(np.int32)),
        "origin": pa.array(origins, pa.string()),
    })
    tokens = pa.table({
        "seq": pa.array(np.arange(total, dtype=np.int64)),
        "doc_id": pa.array(np.repeat(np.arange(n_docs, dtype=np.int32), length)),
        "pos": pa.array((np.arange(total, dtype=np.int64) - np.repeat(starts, length)).astype(np.int32)),
        "token_id": pa.array(np.concatenate(ids) if ids else np.zeros(0, np.int32)),
    })
    return documents, tokens


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` items (the last may be shorter); itertools.batched arrives only in Python 3.12."""
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def get_corpus(wh: Warehouse, name: str) -> dict:
    """The corpus row as a dict (meta parsed); FeatstoreError for an unknown name."""
    return wh.corpora.get(name)


def check_tokenizer(corpus: dict, model: dict) -> None:
    """A model reads a corpus slice only if the slice was tokenized with the model's tokenizer."""
    if model.get("tokenizer") and corpus["tokenizer"] != model["tokenizer"]:
        raise FeatstoreError(
            f"corpus {corpus['name']!r} was tokenized with tokenizer {corpus['tokenizer']}, model {model['name']!r} uses "
            f"{model['tokenizer']}; add the corpus again with the model's tokenizer"
        )


def slices_to_compute(stored: Mapping[str | None, bool], every: bool, held: str, redo: str) -> tuple[list, str | None]:
    """The slices a command given no --corpus computes: those whose result is not `stored`, all with `every`
    (--all-corpora); and the line naming the skipped ones (None: none skipped). `held` says what a skipped
    slice has, `redo` what --all-corpora does; slice None is the SAEs' weights (`match`'s data-free slice)."""
    todo = [name for name, done in stored.items() if every or not done]
    skipped = ", ".join(name or "weights" for name in stored if name not in todo)
    if not skipped:
        return todo, None
    if not todo:
        return [], f"{held} on every slice ({skipped}); --all-corpora {redo}"
    return todo, f"skipped {skipped}, where {held} (--all-corpora {redo})"


def list_corpora(wh: Warehouse) -> pa.Table:
    return wh.corpora.list()


def document_offsets(wh: Warehouse, name: str) -> np.ndarray:
    """tok of each document's first token, plus the end: doc d spans [offsets[d], offsets[d + 1])."""
    corpus = get_corpus(wh, name)
    lengths = wh.corpora.document_lengths(name).column(0)
    return corpus["tok_start"] + np.concatenate([[0], np.cumsum(lengths.to_numpy(), dtype=np.int64)])


def corpus_token_blocks(wh: Warehouse, name: str) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(doc_id, tok, token_id) per document, in tok order.

    Reads about a million tokens per short connection, so a long consumer (an ingest) holds no
    warehouse connection while it computes.
    """
    offsets = document_offsets(wh, name)
    first_doc = 0
    n_docs = len(offsets) - 1
    while first_doc < n_docs:
        last_doc = int(np.searchsorted(offsets, offsets[first_doc] + READ_BLOCK_TOKENS, side="right")) - 1
        last_doc = min(max(last_doc, first_doc + 1), n_docs)
        block = wh.corpora.token_block(name, int(offsets[first_doc]), int(offsets[last_doc]))
        toks = block.column("tok").to_numpy()
        token_ids = block.column("token_id").to_numpy()
        bounds = offsets[first_doc : last_doc + 1] - offsets[first_doc]
        for i, doc_id in enumerate(range(first_doc, last_doc)):
            yield doc_id, toks[bounds[i] : bounds[i + 1]], token_ids[bounds[i] : bounds[i + 1]]
        first_doc = last_doc
