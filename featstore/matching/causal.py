"""The causal check of a compared pair of SAEs: ablate each matched pair's features in their models and
store whether they do the same thing (featstore.matching.effects) as the evidence of the `causal` method.

The pairs are the best matches of the first SAE's features under another method (by default the paper's
all-token correlation) on the corpus slice: the `top` best-scoring ones and a seeded random `sample` of
the rest, so the check sees weak matches too. Each pair becomes a `causal_effects` row (its effect sizes
and agreements); those with a position to read are also candidate pairs of a `causal` match run, scored by
`effect_cosine`, so the agreement views and policies treat the method like any other.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featstore.errors import FeatstoreError
from featstore.matching.evidence import assign
from featstore.matching.methods import METHODS
from featstore.models.presets import setting
from featstore.saes.catalog import get_sae
from featstore.text.slices import check_tokenizer, get_corpus
from featstore.warehouse import Warehouse

METHOD = "causal"


@dataclass(frozen=True)
class CausalSettings:
    top: int = setting(64, "Best-scoring matches checked.")
    sample: int = setting(64, "Further matches drawn at random from the rest, so weak matches are checked too.")
    method: str = setting("all_tokens", "Match method whose best matches (a feature of SAE_A -> one of SAE_B) are checked.")
    blocks: int = setting(64, "Blocks of the corpus slice read, drawn at random.")
    block_len: int = setting(128, "Tokens per block.")
    pair_blocks: int = setting(8, "Blocks read per pair at most: those where either feature fires.")
    batch_rows: int = setting(8, "Ablated copies of a block per forward pass.")
    seed: int = setting(0, "Seed of the sampled matches and of the blocks.")

    def __post_init__(self):
        for name in ("top", "sample"):
            if getattr(self, name) < 0:
                raise FeatstoreError(f"causal {name} must be at least 0 (got {getattr(self, name)})")
        if self.top + self.sample < 1:
            raise FeatstoreError("causal top and sample are both 0: no pair would be checked; give one of them")
        for name in ("blocks", "block_len", "pair_blocks", "batch_rows"):
            if getattr(self, name) < 1:
                raise FeatstoreError(f"causal {name} must be at least 1 (got {getattr(self, name)})")
        if self.block_len < 2:
            raise FeatstoreError("causal block_len must be at least 2: a loss change needs a next token")
        if self.method not in METHODS or self.method == METHOD:
            usable = ", ".join(m for m in METHODS if m != METHOD)
            raise FeatstoreError(f"causal method {self.method!r} is not a match method to check; use one of {usable}")


def causal_evidence(wh: Warehouse, sae_a: str, sae_b: str, corpus: str, *, settings: CausalSettings = CausalSettings(),
                    device: str | None = None, progress: bool = True) -> dict:
    """Check the chosen matches of `sae_a` -> `sae_b` on `corpus`, replacing the pair's causal run there;
    returns its counts: pairs checked, pairs with a position to read, pairs agreeing (score >= the method's threshold)."""
    import torch

    from featstore.matching.effects import pair_effects
    from featstore.models.hf import load_model, resolve_device
    from featstore.saes import load_sae
    from featstore.saes.training import warehouse_blocks

    rows = _check(wh, sae_a, sae_b, corpus)
    chosen = choose_pairs(wh.named("matching/causal_candidates", sae_a=sae_a, sae_b=sae_b, corpus=corpus,
                                   method=settings.method), settings)
    if not chosen.num_rows:
        raise FeatstoreError(_no_matches(sae_a, sae_b, corpus, settings.method))
    device = resolve_device(device)
    start = time.perf_counter()
    blocks = _blocks(warehouse_blocks(wh, corpus, settings.block_len), settings)
    models = tuple(load_model(wh.models.get(r["model"])["path"], device) for r in rows)
    saes = tuple(load_sae(r["path"], device) for r in rows)
    pairs = np.stack([chosen.column(c).to_numpy() for c in ("feature_a", "feature_b")], axis=1).astype(np.int64)
    with torch.no_grad():
        effects = pair_effects(models, saes, tuple(r["hook_point"] for r in rows), blocks, pairs,
                               pair_blocks=settings.pair_blocks, batch_rows=settings.batch_rows, device=device,
                               progress=progress)
    return _store(wh, sae_a, sae_b, corpus, settings, chosen, effects, time.perf_counter() - start)


def choose_pairs(candidates: pa.Table, settings: CausalSettings) -> pa.Table:
    """The `top` first candidates (they come best first) and a seeded sample of `sample` of the rest,
    each marked `selected` 'top' or 'sample'."""
    n = candidates.num_rows
    top = min(settings.top, n)
    rest = np.random.default_rng(settings.seed).permutation(np.arange(top, n))[: settings.sample]
    picked = np.concatenate([np.arange(top), np.sort(rest)]).astype(np.int64)
    selected = pa.array(["top"] * top + ["sample"] * len(rest))
    return candidates.take(pa.array(picked)).append_column("selected", selected)


def _check(wh: Warehouse, sae_a: str, sae_b: str, corpus: str) -> list[dict]:
    if sae_a == sae_b:
        raise FeatstoreError(f"SAE {sae_a!r} would be checked against itself; give two different SAEs")
    rows = [get_sae(wh, sae_a), get_sae(wh, sae_b)]
    corpus_row = get_corpus(wh, corpus)
    for row in rows:
        if row["architecture"] == "crosscoder":
            raise FeatstoreError(f"{row['id']!r} is a crosscoder; the causal check ablates the features of one "
                                 "model's SAE, so give the two models' SAEs")
        check_tokenizer(corpus_row, wh.models.get(row["model"]))
    return rows


def _no_matches(sae_a: str, sae_b: str, corpus: str, method: str) -> str:
    how = (f"`featstore correlate {sae_a} {sae_b} --corpus {corpus} --stat {method}`"
           if METHODS[method].source == "correlation" else f"`featstore match {sae_a} {sae_b} --method {method}`")
    return f"SAEs {sae_a!r} and {sae_b!r} have no {method} matches on corpus {corpus!r} to check; run {how} first"


def _blocks(blocks: np.ndarray, settings: CausalSettings) -> np.ndarray:
    """`settings.blocks` of the slice's blocks, drawn at random (seeded), in corpus order."""
    picked = np.random.default_rng(settings.seed).permutation(len(blocks))[: settings.blocks]
    return blocks[np.sort(picked)]


def _store(wh: Warehouse, sae_a: str, sae_b: str, corpus: str, settings: CausalSettings, chosen: pa.Table,
           effects: pa.Table, seconds: float) -> dict:
    key = {"sae_a": sae_a, "sae_b": sae_b, "corpus": corpus, "method": METHOD}
    tested = effects.filter(pc.greater(effects.column("tokens"), 0))
    pairs = tested.select(["feature_a", "feature_b", "effect_cosine"]).rename_columns(["feature_a", "feature_b", "score"])
    rows = effects.append_column("match_score", chosen.column("score").cast(pa.float64()))
    rows = rows.append_column("selected", chosen.column("selected"))
    with wh.transaction() as con:
        run_id = wh.matches.new_run(con, key, top_k=settings.top, floor=METHODS[METHOD].floor)
        wh.matches.add_pairs(con, run_id, pairs.cast(pa.schema([("feature_a", pa.uint32()), ("feature_b", pa.uint32()),
                                                                 ("score", pa.float32())])))
        wh.matches.add_effects(con, run_id, settings.method, rows)
        wh.matches.finish(con, run_id, seconds)
    assign(wh, sae_a, sae_b, corpus, methods=[METHOD])
    threshold = wh.named_scalar("matching/method_threshold", method=METHOD)
    scores = pairs.column("score").to_numpy()
    return {"corpus": corpus, "pairs": chosen.num_rows, "tested": tested.num_rows,
            "agreeing": int((scores >= threshold).sum()), "settings": asdict(settings), "seconds": round(seconds, 2)}
