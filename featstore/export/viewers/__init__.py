"""Exports for the tools researchers view features in, read from the warehouse: no activation is recomputed.

`export_features(wh, sae, fmt)` writes, under `<warehouse>/exports/<sae>-<format>/` by default:
  neuronpedia   Neuronpedia's import layout for the SAE as a source: v1/<model>/<source>/ (`neuronpedia.py`)
  neuronpedia-api  the request bodies of Neuronpedia's upload-batch API route (`neuronpedia.py`)
  delphi        delphi's latent cache: safetensors splits of locations/activations/tokens (`delphi.py`)
  saedashboard  SAEDashboard's per-feature batch JSON, the data its dashboards render (`saedashboard.py`;
                its logit tables are the decoder rows through the model's unembedding, computed here)
All of them see the corpus as featstore's ingest did: documents cut into windows of `context` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse

FORMATS = ("neuronpedia", "neuronpedia-api", "delphi", "saedashboard")
N_EXAMPLES = 20


@dataclass
class FeatureData:
    """An SAE's stored activations on one corpus, placed in (sequence, position) of padded windows."""

    sae: dict
    corpus: str
    model_path: str         # the SAE's model folder (or hub id): where its tokenizer is
    tokens: np.ndarray      # (n_sequences, context) token ids, right-padded with `pad_id`
    lengths: np.ndarray     # real tokens per sequence
    sequence: np.ndarray    # per activation row: its sequence
    position: np.ndarray    # per activation row: its position in the sequence
    feature: np.ndarray
    act: np.ndarray
    vocab: dict[int, str]   # token id -> text
    explanations: dict[int, tuple[str, str]]  # feature -> (explanation, explainer)
    n_tokens: int
    wh: Warehouse | None = None  # where it was read from (SAEDashboard's export reads the stored correlations)

    @cached_property
    def _by_feature(self) -> tuple[np.ndarray, np.ndarray]:
        """Row numbers sorted by feature, and the features in that order: one sort for every lookup."""
        order = np.argsort(self.feature, kind="stable")
        return order, self.feature[order]

    def rows_of(self, feature: int) -> np.ndarray:
        order, features = self._by_feature
        return order[np.searchsorted(features, feature, side="left"):np.searchsorted(features, feature, side="right")]

    def top_sequences(self, feature: int, n: int = N_EXAMPLES) -> list[int]:
        """The sequences where `feature` reaches its highest activations, strongest first."""
        rows = self.rows_of(feature)
        best: dict[int, float] = {}
        for seq, value in zip(self.sequence[rows].tolist(), self.act[rows].tolist()):
            best[seq] = max(best.get(seq, 0.0), value)
        return sorted(best, key=lambda s: (-best[s], s))[:n]

    def values(self, feature: int, seq: int) -> np.ndarray:
        """`feature`'s activation at every real position of sequence `seq` (zeros where it is silent)."""
        out = np.zeros(int(self.lengths[seq]), dtype=np.float32)
        rows = self.rows_of(feature)
        rows = rows[self.sequence[rows] == seq]
        out[self.position[rows]] = self.act[rows]
        return out

    def texts(self, seq: int) -> list[str]:
        return [self.vocab.get(int(t), "") for t in self.tokens[seq, : self.lengths[seq]]]


def load_feature_data(wh: Warehouse, sae_id: str, corpus: str | None = None, context: int = 256) -> FeatureData:
    from featstore.activations.ingest import windows
    from featstore.models.catalog import get_model
    from featstore.saes.catalog import get_sae

    sae = get_sae(wh, sae_id)
    corpora = wh.partitions.corpora_of(sae_id)
    if corpus is None:
        if len(corpora) != 1:
            raise FeatstoreError(f"SAE {sae_id!r} has activations on {len(corpora)} corpora ({', '.join(corpora) or 'none'}); give --corpus")
        corpus = corpora[0]
    table = pq.read_table(wh.partition_files(sae_id, corpus), columns=["tok", "feature", "act"])
    spans = list(windows(wh, corpus, context))
    lengths = np.array([len(toks) for toks, _ in spans], dtype=np.int64)
    tokens = np.zeros((len(spans), context), dtype=np.int64)
    for i, (_, ids) in enumerate(spans):
        tokens[i, : len(ids)] = ids
    starts = np.array([toks[0] for toks, _ in spans], dtype=np.int64)  # toks are consecutive within a window
    tok = table.column("tok").to_numpy().astype(np.int64)
    sequence = np.searchsorted(starts, tok, side="right") - 1
    fingerprint = wh.corpora.get(corpus)["tokenizer"]
    vocab = wh.named("export/viewer_vocab", tokenizer=fingerprint)
    explained = wh.named("export/viewer_explanations", sae=sae_id, corpus=corpus).to_pylist()
    return FeatureData(
        sae=sae, corpus=corpus, model_path=get_model(wh, sae["model"])["path"], tokens=tokens, lengths=lengths, sequence=sequence, position=tok - starts[sequence],
        feature=table.column("feature").to_numpy().astype(np.int64), act=table.column("act").to_numpy().astype(np.float32),
        vocab=dict(zip(vocab.column("token_id").to_pylist(), vocab.column("text").to_pylist())),
        explanations={r["feature"]: (r["explanation"], r["explainer"]) for r in explained}, n_tokens=int(lengths.sum()), wh=wh,
    )


def export_features(wh: Warehouse, sae_id: str, fmt: str, *, corpus: str | None = None, out_dir: str | Path | None = None,
                    context: int = 256, features: list[int] | None = None) -> dict:
    """Write SAE `sae_id`'s features in `fmt` (one of FORMATS); returns where and how many."""
    from featstore.export.viewers import delphi, neuronpedia, saedashboard

    writers = {"neuronpedia": neuronpedia.write, "neuronpedia-api": neuronpedia.write_api, "delphi": delphi.write,
               "saedashboard": saedashboard.write}
    if fmt not in writers:
        raise FeatstoreError(f"unknown feature export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "delphi":  # delphi cuts each window into 32-token examples
        delphi.check_context(context)
    if fmt == "neuronpedia-api":  # the upload route takes examples of at most 1024 tokens
        neuronpedia.check_context(context)
    if context < 1:
        raise FeatstoreError(f"--context must be positive (got {context})")
    _check_features(wh, sae_id, features)
    data = load_feature_data(wh, sae_id, corpus, context)
    out = Path(out_dir) if out_dir is not None else wh.root / "exports" / f"{sae_id}-{fmt}"
    out.mkdir(parents=True, exist_ok=True)
    chosen = sorted(set(data.feature.tolist())) if features is None else features
    written = writers[fmt](data, out, chosen)
    return {"sae": sae_id, "corpus": data.corpus, "format": fmt, "path": str(out), "features": len(chosen), "files": written}


def _check_features(wh: Warehouse, sae_id: str, features: list[int] | None) -> None:
    """Refuse feature numbers the SAE does not have, before anything is read or written."""
    from featstore.saes.catalog import get_sae

    d_sae = get_sae(wh, sae_id)["d_sae"]
    outside = sorted({f for f in features or [] if not 0 <= f < d_sae})
    if outside:
        raise FeatstoreError(f"feature {outside[0]} is outside 0..{d_sae - 1}: SAE {sae_id!r} has {d_sae} features")


__all__ = ["FORMATS", "FeatureData", "export_features", "load_feature_data"]
