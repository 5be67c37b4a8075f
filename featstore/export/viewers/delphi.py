"""delphi's latent cache (EleutherAI's auto-interpretability library), so `delphi` explains and scores
from featstore's store without re-running the model.

The layout its `LatentCache.save_splits` / `save_config` write and its `LatentDataset` reads:
`<out>/<hookpoint>/<start>_<end>.safetensors` for latent ranges [start, end] (inclusive, the edges of
torch.linspace(0, d_sae, n_splits + 1)), each holding `locations` (n, 3: sequence, position, latent
minus start), `activations` (n, float16) and `tokens` (n_sequences, context); and
`<out>/<hookpoint>/config.json` with the cache config and `model_name` (here the model's folder,
so delphi's AutoTokenizer finds the tokenizer offline).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

N_SPLITS = 5


def split_edges(d_sae: int, n_splits: int = N_SPLITS) -> list[tuple[int, int]]:
    bounds = np.linspace(0, d_sae, n_splits + 1).astype(np.int64)  # torch.linspace(...).long() truncates alike
    return [(int(a), int(b) - 1) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def write(data, out: Path, features: list[int]) -> int:
    from safetensors.numpy import save_file

    module = out / data.sae["hook_point"]
    module.mkdir(parents=True, exist_ok=True)
    keep = np.isin(data.feature, features)
    written = 0
    for start, end in split_edges(data.sae["d_sae"]):
        rows = keep & (data.feature >= start) & (data.feature <= end)
        locations = np.stack([data.sequence[rows], data.position[rows], data.feature[rows] - start], axis=1)
        small = locations.size == 0 or (locations[:, 2].max() < 2**16 and locations[:, 0].max() < 2**16)
        save_file({"locations": locations.astype(np.uint16 if small else np.uint32),
                   "activations": data.act[rows].astype(np.float16),
                   "tokens": data.tokens.astype(np.int64)}, str(module / f"{start}_{end}.safetensors"))
        written += 1
    config = {"dataset_repo": f"featstore:{data.corpus}", "dataset_split": "all", "dataset_name": "", "dataset_column": "text",
              "batch_size": 16, "cache_ctx_len": int(data.tokens.shape[1]), "ctx_len": int(data.tokens.shape[1]),
              "n_tokens": data.n_tokens, "n_splits": written, "model_name": data.model_path, "featstore_sae": data.sae["id"]}
    (module / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return written + 1
