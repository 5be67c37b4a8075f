"""delphi's latent cache (EleutherAI's auto-interpretability library), so `delphi` explains and scores
from featstore's store without re-running the model.

The layout its `LatentCache.save_splits` / `save_config` write and its `LatentDataset` reads:
`<out>/<hookpoint>/<start>_<end>.safetensors` for latent ranges [start, end] (inclusive, the edges of
torch.linspace(0, d_sae, n_splits + 1)), each holding `locations` (n, 3: sequence, position, latent
minus start), `activations` (n, float16) and `tokens` (n_sequences, context); and
`<out>/<hookpoint>/config.json` with the cache config and `model_name` (here the model's folder,
so delphi's AutoTokenizer finds the tokenizer offline).

The token windows are cut as delphi cuts its own (`load_tokenized_data` -> sparsify's
`chunk_and_tokenize`): the corpus's documents, in order, as one stream of real tokens, cut into
`context`-token rows, the ragged tail (fewer than `context` tokens) dropped with its activations. No row
holds padding, so delphi's per-token frequency (firings / rows x context) is featstore's firing count
over the cached tokens, and its random non-activating examples are real text. featstore inserts no
separator between documents: every cached token is a corpus token with its stored activations.
delphi cuts each row into `example_ctx_len`-token examples (`tokens.reshape(-1, 32)`), so `context`
must be a positive multiple of that length (`check_context`).
"""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np

from featstore.errors import FeatstoreError

N_SPLITS = 5
EXAMPLE_CTX_LEN = 32  # delphi's ConstructorConfig.example_ctx_len default: the examples it cuts each row into


def check_context(context: int, example_len: int = EXAMPLE_CTX_LEN) -> None:
    """Refuse a window length delphi cannot cut into `example_len`-token examples."""
    if context < example_len or context % example_len:
        fit = max(example_len, round(context / example_len) * example_len)
        raise FeatstoreError(f"--context {context} does not fit delphi, which cuts each cached window into "
                             f"{example_len}-token examples: give a positive multiple of {example_len} (e.g. --context {fit})")


def split_edges(d_sae: int, n_splits: int = N_SPLITS) -> list[tuple[int, int]]:
    bounds = np.linspace(0, d_sae, n_splits + 1).astype(np.int64)  # torch.linspace(...).long() truncates alike
    return [(int(a), int(b) - 1) for a, b in pairwise(bounds) if b > a]


def stream_windows(data, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """The corpus's real tokens as one stream cut into full `context`-token rows: (tokens (n, context),
    and per activation row its sequence, its position and whether it is kept), plus the dropped tail's length."""
    real = np.arange(data.tokens.shape[1])[None, :] < data.lengths[:, None]
    stream = data.tokens[real]  # row-major: the documents' windows, in order, without their padding
    n_rows = len(stream) // context
    starts = np.cumsum(data.lengths) - data.lengths
    offset = starts[data.sequence] + data.position  # each activation's place in the stream
    return (stream[: n_rows * context].reshape(n_rows, context).astype(np.int64), offset // context,
            offset % context, offset < n_rows * context, int(len(stream) - n_rows * context))


def write(data, out: Path, features: list[int]) -> int:
    from safetensors.numpy import save_file

    context = int(data.tokens.shape[1])
    check_context(context)
    tokens, sequence, position, cached, tail = stream_windows(data, context)
    if not len(tokens):
        raise FeatstoreError(f"corpus {data.corpus!r} has {data.n_tokens} tokens, fewer than one --context {context} window; "
                             f"give a smaller multiple of {EXAMPLE_CTX_LEN}")
    module = out / data.sae["hook_point"]
    module.mkdir(parents=True, exist_ok=True)
    keep = cached & np.isin(data.feature, features)
    written = 0
    for start, end in split_edges(data.sae["d_sae"]):
        rows = keep & (data.feature >= start) & (data.feature <= end)
        locations = np.stack([sequence[rows], position[rows], data.feature[rows] - start], axis=1)
        small = locations.size == 0 or (locations[:, 2].max() < 2**16 and locations[:, 0].max() < 2**16)
        save_file({"locations": locations.astype(np.uint16 if small else np.uint32),
                   "activations": data.act[rows].astype(np.float16),
                   "tokens": tokens}, str(module / f"{start}_{end}.safetensors"))
        written += 1
    config = {"dataset_repo": f"featstore:{data.corpus}", "dataset_split": "all", "dataset_name": "", "dataset_column": "text",
              "batch_size": 16, "cache_ctx_len": context, "ctx_len": context, "n_tokens": int(tokens.size),
              "n_splits": written, "model_name": data.model_path, "featstore_sae": data.sae["id"],
              "featstore_corpus_tokens": data.n_tokens, "featstore_tail_tokens_dropped": tail}
    (module / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return written + 1
