"""Train and evaluate SAEs on a model's MLP hidden activation, as in the paper minus its code's defects.

The loop is the same for every architecture (`featstore.saes`): the decoder bias starts at the
geometric median of the activations; dictionary vectors (rows of W_dec) stay at unit norm, with the
gradient component along them removed before each step; dead features are resampled toward badly
reconstructed inputs (Anthropic, "Towards Monosemanticity") with their Adam state reset. The
architecture adds its sparsity loss (ReLU's L1, none for TopK) and says how a feature is
reinitialised. The loss is scale-free: squared error divided by the activations' mean squared
distance to the median, and ReLU's L1 term divided by its square root, so one coefficient behaves
alike on models whose activations differ in scale.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from featstore.errors import FeatstoreError
from featstore.models.capture import iter_mlp_activations
from featstore.models.hf import load_model, resolve_device
from featstore.models.hooks import hook_name
from featstore.models.layouts import hook_site
from featstore.saes import SAE, SAEConfig, get_architecture, load_sae, save_sae
from featstore.saes.evaluation import evaluate, plot_density
from featstore.saes.presets import TRAINING_STEPS, TrainSettings
from featstore.saes.sparse import Activity

INIT_FILE = "sae_init.safetensors"
DENSITY_PLOT = "feature_density.png"
LOG_EVERY = 20


def config_for(settings: TrainSettings, d_in: int, **metadata) -> SAEConfig:
    """The SAE config a run trains: d_sae = expansion x d_in, the architecture's options, `metadata`."""
    cls = get_architecture(settings.architecture)
    return cls.config_class(d_in=d_in, d_sae=d_in * settings.expansion, seed=settings.seed, **settings.options, **metadata)


# -- data ------------------------------------------------------------------------------------------


def pack_blocks(token_ids: Iterable[Iterable[int]], block_len: int, max_tokens: int | None = None) -> np.ndarray:
    """Concatenate token sequences and cut them into (n_blocks, block_len) rows, dropping the remainder."""
    chunks, total = [], 0
    for ids in token_ids:
        chunks.append(np.asarray(ids, dtype=np.int64))
        total += len(chunks[-1])
        if max_tokens is not None and total >= max_tokens:
            break
    n_blocks = total // block_len
    if max_tokens is not None:
        n_blocks = min(n_blocks, max(1, max_tokens // block_len))
    if n_blocks == 0:
        raise FeatstoreError(f"the training text holds fewer than {block_len} tokens; give a larger source")
    return np.concatenate(chunks)[: n_blocks * block_len].reshape(n_blocks, block_len)


def tokenize_texts(texts: Iterable[str], tokenizer, chunk: int = 256) -> Iterator[list[int]]:
    """Token ids of each text followed by the end-of-sequence token, tokenized in chunks for speed."""
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    buffer: list[str] = []
    for text in texts:
        buffer.append(text)
        if len(buffer) == chunk:
            yield from (ids + eos for ids in tokenizer(buffer, add_special_tokens=False)["input_ids"])
            buffer = []
    if buffer:
        yield from (ids + eos for ids in tokenizer(buffer, add_special_tokens=False)["input_ids"])


def text_blocks(spec: str, part: str, tokenizer, block_len: int, max_tokens: int, seed: int = 0) -> np.ndarray:
    """Blocks from a corpus spec (a source or a mixture) through `featstore.text.mixtures.iter_texts`."""
    from featstore.text.mixtures import iter_texts

    return pack_blocks(tokenize_texts(iter_texts(spec, part=part, seed=seed), tokenizer), block_len, max_tokens)


def warehouse_blocks(wh, corpus: str, block_len: int) -> np.ndarray:
    """Blocks from a corpus slice already tokenized into the warehouse."""
    from featstore.text.slices import corpus_token_blocks

    return pack_blocks((ids for _doc, _tok, ids in corpus_token_blocks(wh, corpus)), block_len)


def shuffled_batches(
    model, blocks: np.ndarray, settings: TrainSettings, device: torch.device, seed: int
) -> Iterator[torch.Tensor]:
    """Endless stream of (batch_tokens, d_mlp) activations over reshuffled passes of `blocks`."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(blocks))
        yield from iter_mlp_activations(
            model, (blocks[i] for i in order), layer=settings.layer, batch_size=settings.batch_blocks, device=device
        )


# -- initialisation --------------------------------------------------------------------------------


@torch.no_grad()
def geometric_median(points: torch.Tensor, iterations: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: the point minimising the sum of Euclidean distances to `points`."""
    median = points.mean(dim=0)
    for _ in range(iterations):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(1e-8)
        new = (weights[:, None] * points).sum(dim=0) / weights.sum()
        shift = (new - median).norm()
        median = new
        if shift <= tol * median.norm().clamp_min(1e-8):
            break
    return median


def init_sae(cfg: SAEConfig, sample: torch.Tensor, seed: int, same_init_as: Path | None = None,
             init_from: Path | None = None) -> SAE:
    """Seeded random dictionary (or another SAE's saved initial weights); b_dec = geometric median of
    `sample`, then the architecture's own data-dependent start. With `init_from`, every weight of that
    trained SAE instead: a lineage-initialised SAE continues the parent's dictionary."""
    from featstore.saes.architectures import sae_class

    torch.manual_seed(seed)
    sae = sae_class(cfg)(cfg)
    if init_from is not None:
        _load_trained(sae, init_from)
        return sae
    if same_init_as is not None:
        _load_init(sae, same_init_as)
    with torch.no_grad():
        sae.b_dec.copy_(geometric_median(sample.float().cpu()))
    sae.initialize_from_data(sample.float().cpu())
    return sae


def _load_init(sae: SAE, folder: Path) -> None:
    from safetensors.torch import load_file

    path = folder / INIT_FILE
    if not path.is_file():
        raise FeatstoreError(f"{folder} has no {INIT_FILE}; --same-init-as needs an SAE trained by featstore")
    init = load_file(str(path))
    for name in ("W_enc", "b_enc", "W_dec"):
        if tuple(init[name].shape) != tuple(getattr(sae, name).shape):
            raise FeatstoreError(
                f"--same-init-as: {name} of {folder} is {tuple(init[name].shape)}, this SAE needs {tuple(getattr(sae, name).shape)}"
            )
        getattr(sae, name).data.copy_(init[name])


def _load_trained(sae: SAE, folder: Path) -> None:
    trained = load_sae(folder)
    if trained.architecture != sae.architecture:
        raise FeatstoreError(f"--init-from: {folder} is a {trained.architecture} SAE; train with --arch {trained.architecture}")
    ours = sae.state_dict()
    for name, tensor in trained.state_dict().items():
        if name in ours and tuple(tensor.shape) != tuple(ours[name].shape):
            raise FeatstoreError(f"--init-from: {name} of {folder} is {tuple(tensor.shape)}, this SAE needs "
                                 f"{tuple(ours[name].shape)} (same hook width and --expansion)")
    sae.load_state_dict(trained.state_dict())


def feature_drift(sae: SAE, folder: Path) -> pa.Table:
    """Per feature, the cosine of its decoder row and of its encoder column with their initial values (the
    folder's INIT_FILE): how far a lineage-initialised SAE's features moved from the parent's."""
    from safetensors.torch import load_file

    start = load_file(str(folder / INIT_FILE))
    cos = torch.nn.functional.cosine_similarity
    decoder = cos(sae.W_dec.detach().cpu().float(), start["W_dec"].float(), dim=1)
    encoder = cos(sae.W_enc.detach().cpu().float(), start["W_enc"].float(), dim=0)
    return pa.table({"feature": pa.array(np.arange(sae.cfg.d_sae), pa.uint32()),
                     "decoder_cosine": pa.array(decoder.double().numpy()), "encoder_cosine": pa.array(encoder.double().numpy())})


def save_init(sae: SAE, folder: Path) -> None:
    """Keep the initial weights so another model's SAE can start from them (--same-init-as)."""
    from safetensors.torch import save_file

    save_file({n: p.detach().cpu().clone() for n, p in sae.named_parameters()}, str(folder / INIT_FILE))


# -- training --------------------------------------------------------------------------------------


def sparse_step(training_step: str, device: torch.device) -> bool:
    """Whether to train with the sparse step: `auto` takes it on CPU (where it is measured faster) and
    keeps the dense one elsewhere (CUDA: not measured faster; the kernels run on CPU)."""
    if training_step not in TRAINING_STEPS:
        raise FeatstoreError(f"unknown training step {training_step!r}; use one of {', '.join(TRAINING_STEPS)}")
    if training_step == "sparse" and device.type != "cpu":
        raise FeatstoreError(f"the sparse training step runs on CPU, not {device.type}; use training_step dense or auto")
    return training_step == "sparse" or (training_step == "auto" and device.type == "cpu")


class Trainer:
    """Adam on the scale-free loss, decoder constraint, dead-feature bookkeeping and resampling."""

    def __init__(self, sae: SAE, settings: TrainSettings, scale: float):
        self.sae = sae
        self.settings = settings
        self.scale = scale  # mean squared distance of activations to their geometric median
        device = sae.W_dec.device
        # one fused kernel per step on CPU: the same update as the per-tensor loop, 4-6x faster there
        self.optimizer = torch.optim.Adam(sae.parameters(), lr=settings.lr, betas=(0.9, settings.beta2), fused=device.type == "cpu")
        self.sparse = sparse_step(settings.training_step, device)
        self.last_fired = torch.zeros(sae.cfg.d_sae, dtype=torch.long, device=device)
        # resampling draws from the SAE's own stream, so SAEs trained side by side draw as if alone
        self.generator = torch.Generator(device).manual_seed(settings.seed)
        self.step_count = 0
        self.resampled = 0
        self.stats: dict = {}

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Activity]:
        """(loss, normalised mse, activity) of a batch, as the architecture defines them, by the chosen step."""
        if self.sparse:
            return self.sae.sparse_training_loss(x, self.scale)
        return self.sae.training_loss(x, self.scale)

    def step(self, x: torch.Tensor) -> tuple[torch.Tensor, Activity]:
        """One optimiser step on a batch; returns (normalised mse, activity) without syncing the device."""
        loss, mse, activity = self.loss(x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sae.remove_parallel_grad()
        self.optimizer.step()
        self.sae.normalize_decoder()
        self.step_count += 1
        self.last_fired.masked_fill_(activity.fired, self.step_count)
        return mse.detach(), activity

    def dead_features(self, window: int) -> torch.Tensor:
        return torch.nonzero(self.step_count - self.last_fired >= window).flatten()

    @torch.no_grad()
    def resample(self, dead: torch.Tensor, x: torch.Tensor) -> None:
        """Point dead features at inputs sampled with probability ∝ squared reconstruction loss."""
        if dead.numel() == 0:
            return
        sae = self.sae
        recon, _ = sae(x)
        weights = (recon - x).pow(2).sum(dim=-1).pow(2)
        if not torch.isfinite(weights).all() or weights.sum() <= 0:
            weights = torch.ones_like(weights)
        picks = torch.multinomial(weights, dead.numel(), replacement=dead.numel() > len(x), generator=self.generator)
        directions = x[picks] - sae.b_dec
        directions /= directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
        alive = torch.ones(sae.cfg.d_sae, dtype=torch.bool, device=dead.device)
        alive[dead] = False
        enc_norm = sae.W_enc[:, alive].norm(dim=0).mean() if alive.any() else torch.tensor(1.0)
        for param, index in sae.reinitialize(dead, directions, enc_norm):
            state = self.optimizer.state.get(param, {})
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][index] = 0.0
        self.last_fired[dead] = self.step_count
        self.resampled += dead.numel()

    def train_on(self, x: torch.Tensor) -> None:
        """One step on a batch; resample dead features every `resample_every` steps until 80% done.

        Statistics are read back from the device only every LOG_EVERY steps, so the loop never waits on it.
        """
        settings = self.settings
        mse, activity = self.step(x)
        if self.step_count % settings.resample_every == 0 and self.step_count <= 0.8 * settings.steps:
            self.resample(self.dead_features(settings.resample_every), x)
        if self.step_count % LOG_EVERY == 0 or self.step_count == settings.steps:
            self.stats = {"train_fvu": mse.item(), "train_l0": activity.l0().item()}
            if not math.isfinite(self.stats["train_fvu"]):
                raise FeatstoreError("training diverged or the model produced NaN/inf activations; check its weights or lower --lr")

    def summary(self) -> dict:
        return {**self.stats, "resampled_features": self.resampled, "steps": self.step_count}

    def fit(self, batches: Iterator[torch.Tensor], progress: bool = True) -> dict:
        """Run `settings.steps` steps on `batches`."""
        return fit_together([self], batches, progress)[0]


def fit_together(trainers: list[Trainer], batches: Iterator[torch.Tensor], progress: bool = True) -> list[dict]:
    """Train several SAEs on one stream: each batch of activations, captured once, steps every trainer
    (SAEs of one model that read the same text in the same order, e.g. seed replicas).

    On CPU with several threads the trainers step side by side, a thread each (`side_by_side`), while
    the next batch is captured: an SAE's step parallelises poorly over threads, the SAEs not at all."""
    steps = trainers[0].settings.steps
    if any(t.settings.steps != steps for t in trainers):
        raise ValueError("SAEs trained together take the same number of steps")
    total = steps * trainers[0].settings.batch_tokens * len(trainers)
    desc = "SAE" if len(trainers) == 1 else f"{len(trainers)} SAEs"
    bar = tqdm(total=total, unit="act", unit_scale=True, disable=not progress, desc=desc)
    with side_by_side(trainers) as step_all:
        x = next(batches)
        for step in range(1, steps + 1):
            stepped = step_all(x)
            x = next(batches) if step < steps else None
            stepped()
            bar.update(total // steps)
            if step % LOG_EVERY == 0:
                bar.set_postfix(L0="/".join(f"{t.stats['train_l0']:.1f}" for t in trainers),
                                FVU="/".join(f"{t.stats['train_fvu']:.3f}" for t in trainers), refresh=False)
    bar.close()
    return [t.summary() for t in trainers]


@contextmanager
def side_by_side(trainers: list[Trainer]) -> Iterator[Callable[[torch.Tensor], Callable[[], None]]]:
    """A function that starts every trainer's step on a batch and returns a wait for them: on CPU with
    more than one SAE and thread, one worker thread per SAE (up to torch's thread count) with torch on
    one thread meanwhile, so the SAEs run in parallel; otherwise the steps run in turn before it returns."""
    threads = torch.get_num_threads()
    workers = min(len(trainers), threads) if trainers[0].sae.W_dec.device.type == "cpu" else 1
    if workers < 2:
        def in_turn(x: torch.Tensor) -> Callable[[], None]:
            for trainer in trainers:
                trainer.train_on(x)
            return lambda: None

        yield in_turn
        return
    torch.set_num_threads(max(1, threads // len(trainers)))
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="featstore-sae") as pool:
            yield lambda x: _wait_for([pool.submit(trainer.train_on, x) for trainer in trainers])
    finally:
        torch.set_num_threads(threads)


def _wait_for(jobs: list[Future]) -> Callable[[], None]:
    def wait() -> None:
        for job in jobs:
            job.result()
    return wait


# -- evaluation ------------------------------------------------------------------------------------
# In `featstore.saes.evaluation` (evaluate, plot_density: imported above); SAEBench's core eval result
# in `featstore.saes.saebench`.


# -- warehouse entry points --------------------------------------------------------------------------


@dataclass(frozen=True)
class SAERun:
    """One SAE of a training pass: its id, settings and place in the registry."""

    sae_id: str
    settings: TrainSettings
    is_primary: bool | None = None  # None: primary when the model has none yet
    seed_of: str | None = None      # a seed replica is never primary
    same_init_as: str | None = None  # start from that SAE's saved initial weights
    init_from: str | None = None     # start from that SAE's trained weights (lineage-initialised; never primary by default)


def train_sae(
    wh,
    model_name: str,
    *,
    settings: TrainSettings,
    sae_id: str | None = None,
    source: str | None = None,
    corpus: str | None = None,
    same_init_as: str | None = None,
    init_from: str | None = None,
    is_primary: bool | None = None,
    seed_of: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Train, evaluate and register one SAE (see `train_saes`); returns its registry row."""
    run = SAERun(sae_id or _default_id(model_name, settings), settings, is_primary, seed_of, same_init_as, init_from)
    return train_saes(wh, model_name, [run], source=source, corpus=corpus, device=device, progress=progress)[0]


def train_saes(
    wh, model_name: str, runs: list[SAERun], *, source: str | None = None, corpus: str | None = None,
    device: str | None = None, progress: bool = True,
) -> list[dict]:
    """Train, evaluate and register SAEs on `model_name`'s MLP activations; returns their registry rows.

    SAEs that read the same text in the same order (equal layer, blocks, batch size, steps, text seed:
    a model's seed replicas, or other sizes and architectures on one hook) train in one pass: the
    model runs once per batch and every SAE steps on the same activations, as if trained alone.
    Training text: `corpus` (a warehouse slice, last 10% of blocks held out for evaluation), else
    `source`, else the model's own `train_corpus` spec (train part; evaluation on its validation part).
    Weights go to hidden folders renamed into `<warehouse>/saes/<id>` only when complete, and each
    SAE is registered last: an interrupted pass registers nothing.
    """
    from featstore.models.catalog import get_model
    from featstore.text.tokenizer import load_tokenizer

    model_row = get_model(wh, model_name)
    runs = _checked_runs(wh, model_name, runs)
    device = resolve_device(device)
    model = load_model(model_row["path"], device)
    tokenizer = load_tokenizer(model_row["path"])
    label = f"corpus:{corpus}" if corpus else source or model_row.get("train_corpus")
    rows = {}
    for group in _passes(runs):
        blocks = _blocks(wh, model_row, tokenizer, group[0].settings, source, corpus)
        trained = _train_pass(wh, model, model_name, group, blocks, label, device, progress)
        rows.update(zip([run.sae_id for run in group], trained))
    return [rows[run.sae_id] for run in runs]


def _checked_runs(wh, model_name: str, runs: list[SAERun]) -> list[SAERun]:
    """Runs with checked, unused ids and their primary flag settled (the model's first SAE is primary)."""
    from featstore.saes.catalog import get_sae
    from featstore.warehouse import check_name

    out, has_primary = [], wh.saes.has_primary(model_name)
    for run in runs:
        check_name("SAE", run.sae_id)
        if run.same_init_as is not None and run.init_from is not None:
            raise FeatstoreError("--same-init-as starts from another SAE's initial weights, --init-from from its trained "
                                 "ones; give one")
        for other in (run.same_init_as, run.init_from):
            if other is not None:
                get_sae(wh, other)
        if wh.saes.exists(run.sae_id) or run.sae_id in [r.sae_id for r in out]:
            raise FeatstoreError(f"SAE {run.sae_id!r} already exists; pick another --id")
        first = not has_primary and run.init_from is None  # a lineage-initialised SAE does not stand for its model unasked
        primary = False if run.seed_of is not None else (first if run.is_primary is None else run.is_primary)
        has_primary = has_primary or primary
        out.append(replace(run, is_primary=primary))
    return out


def _passes(runs: list[SAERun]) -> list[list[SAERun]]:
    """Runs grouped by the data they read: one pass over the model's activations per group."""
    groups: dict[tuple, list[SAERun]] = {}
    for run in runs:
        s = run.settings
        groups.setdefault((s.layer, s.block_len, s.batch_blocks, s.steps, s.text_seed, s.eval_tokens), []).append(run)
    return list(groups.values())


def _train_pass(
    wh, model, model_name: str, runs: list[SAERun], blocks: tuple[np.ndarray, np.ndarray], source: str | None,
    device: torch.device, progress: bool,
) -> list[dict]:
    """Train `runs` side by side on one stream of activations, then evaluate, save and register each."""
    from featstore.saes.catalog import get_sae

    settings = runs[0].settings
    train_blocks, eval_blocks = blocks
    width = hook_site(model, hook_name(settings.layer)).width
    batches = shuffled_batches(model, train_blocks, settings, device, settings.text_seed)
    sample = torch.cat([next(batches) for _ in range(max(1, 8192 // settings.batch_tokens))])
    trainers, tmps = [], []
    try:
        for run in runs:
            cfg = config_for(run.settings, width, hook_name=hook_name(settings.layer), hook_layer=settings.layer,
                             model_name=model_name, extra={"settings": asdict(run.settings), "source": source})
            init_folder, trained = (Path(get_sae(wh, other)["path"]) if other else None
                                    for other in (run.same_init_as, run.init_from))
            sae = init_sae(cfg, sample, run.settings.seed, init_folder, trained).to(device)
            scale = float((sample.to(device) - sae.b_dec.detach()).pow(2).sum(dim=-1).mean())
            tmps.append(wh.root / "saes" / f".{run.sae_id}.{uuid.uuid4().hex[:8]}.tmp")
            tmps[-1].mkdir(parents=True)
            save_init(sae, tmps[-1])
            trainers.append(Trainer(sae, run.settings, scale))
        train_stats = fit_together(trainers, batches, progress)
        metrics = []
        for run, trainer, stats, tmp in zip(runs, trainers, train_stats, tmps):
            metrics.append(_finish(wh, model, trainer.sae, run, stats, tmp, eval_blocks, len(train_blocks), device))
    finally:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)
    return [_register(wh, model_name, run, trainer.sae, m) for run, trainer, m in zip(runs, trainers, metrics)]


def _finish(wh, model, sae: SAE, run: SAERun, stats: dict, tmp: Path, eval_blocks: np.ndarray, n_blocks: int,
            device: torch.device) -> dict:
    """Evaluate a trained SAE, write its folder and move it into place; returns its metrics."""
    settings = run.settings
    sae.eval()
    metrics, density = evaluate(model, sae, eval_blocks, layer=settings.layer, batch_blocks=settings.batch_blocks, device=device)
    metrics.update(stats, train_tokens=settings.steps * settings.batch_tokens, train_blocks=n_blocks)
    save_sae(sae, tmp)
    plot_density(density, tmp / DENSITY_PLOT, f"{run.sae_id}: feature density")
    folder = wh.root / "saes" / run.sae_id
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return metrics


def _register(wh, model_name: str, run: SAERun, sae: SAE, metrics: dict) -> dict:
    from featstore.saes.catalog import register_sae

    cfg = sae.cfg
    return register_sae(
        wh, run.sae_id, model_name, str(wh.root / "saes" / run.sae_id), hook_point=cfg.hook_name, layer=run.settings.layer,
        d_in=cfg.d_in, d_sae=cfg.d_sae, architecture=run.settings.architecture, l1_coeff=getattr(cfg, "l1_coefficient", None),
        k=getattr(cfg, "k", None), seed=run.settings.seed, train_tokens=metrics["train_tokens"], metrics=metrics,
        is_primary=run.is_primary, seed_of=run.seed_of, init_from=run.init_from,
        drift=feature_drift(sae, wh.root / "saes" / run.sae_id) if run.init_from else None,
    )


def train_seed_replica(
    wh, sae_id: str, *, model: str | None = None, seed: int | None = None, replica_id: str | None = None,
    device: str | None = None, progress: bool = True,
) -> dict:
    """Train an SAE that differs from `sae_id` only in its seed: same model, text, batch order and settings.

    The settings come from the original's cfg.json; `seed` defaults to the original's plus one.
    Its id defaults to `<sae_id>-seed<seed>`. Returns the replica's registry row.
    """
    from featstore.saes import read_folder
    from featstore.saes.catalog import get_sae

    original = get_sae(wh, sae_id)
    if model is not None and model != original["model"]:
        raise FeatstoreError(f"SAE {sae_id!r} belongs to model {original['model']!r}, not {model!r}; a seed replica reads the same model")
    extra = read_folder(original["path"])[1].extra if original.get("path") else {}
    if "settings" not in extra:
        raise FeatstoreError(f"SAE {sae_id!r} was not trained by featstore (its cfg.json has no settings); a seed replica needs them")
    base = TrainSettings(**extra["settings"])
    seed = base.seed + 1 if seed is None else seed
    if seed == base.seed:
        raise FeatstoreError(f"SAE {sae_id!r} was trained with seed {seed}; give its replica another --seed")
    settings = replace(base, seed=seed, data_seed=base.text_seed)
    source = extra.get("source") or ""
    corpus = source.removeprefix("corpus:") if source.startswith("corpus:") else None
    return train_sae(wh, original["model"], settings=settings, sae_id=replica_id or f"{sae_id}-seed{seed}",
                     source=None if corpus else source or None, corpus=corpus, seed_of=sae_id, device=device, progress=progress)


def _default_id(model_name: str, settings: TrainSettings) -> str:
    return f"{model_name}-{settings.architecture}-x{settings.expansion}-s{settings.seed}"


def _blocks(wh, model_row: dict, tokenizer, settings: TrainSettings, source: str | None, corpus: str | None):
    """(train blocks, eval blocks) for a run, checking the corpus was tokenized like the model."""
    from featstore.text.slices import check_tokenizer, get_corpus

    n_train = settings.steps * settings.batch_blocks
    if corpus is not None:
        check_tokenizer(get_corpus(wh, corpus), model_row)
        blocks = warehouse_blocks(wh, corpus, settings.block_len)
        n_eval = max(1, min(len(blocks) // 10, settings.eval_tokens // settings.block_len))
        if len(blocks) - n_eval < 1:
            raise FeatstoreError(f"corpus {corpus!r} is too small to train an SAE on")
        return blocks[: len(blocks) - n_eval], blocks[len(blocks) - n_eval :]
    spec = source or model_row.get("train_corpus")
    if not spec:
        raise FeatstoreError(f"model {model_row['name']!r} records no training corpus; pass --source SPEC or --corpus NAME")
    train = text_blocks(spec, "train", tokenizer, settings.block_len, n_train * settings.block_len, settings.text_seed)
    evaluation = text_blocks(spec, "validation", tokenizer, settings.block_len, settings.eval_tokens, settings.text_seed)
    return train, evaluation


def evaluate_sae(
    wh, sae_id: str, *, source: str | None = None, corpus: str | None = None, eval_tokens: int = 20_000,
    batch_blocks: int = 32, device: str | None = None, saebench: str | Path | None = None,
) -> dict:
    """Re-evaluate a registered SAE (on its model's validation text, or a corpus slice) and record the metrics;
    with `saebench`, also write SAEBench's `core` eval result of the same pass there (featstore.saes.saebench)."""
    from featstore.models.catalog import get_model
    from featstore.saes.catalog import check_hook, get_sae, update_sae_metrics
    from featstore.saes.evaluation import evaluation
    from featstore.text.slices import check_tokenizer, get_corpus
    from featstore.text.tokenizer import load_tokenizer

    row = get_sae(wh, sae_id)
    model_row = get_model(wh, row["model"])
    check_hook(model_row, row["hook_point"], row["layer"], row["d_in"])
    device = resolve_device(device)
    model = load_model(model_row["path"], device)
    sae = load_sae(row["path"], device)
    settings = TrainSettings(eval_tokens=eval_tokens, batch_blocks=batch_blocks, tokens=0, layer=row["layer"])
    if corpus is not None:
        check_tokenizer(get_corpus(wh, corpus), model_row)
        blocks = warehouse_blocks(wh, corpus, settings.block_len)[: max(1, eval_tokens // settings.block_len)]
    else:
        spec = source or model_row.get("train_corpus")
        if not spec:
            raise FeatstoreError(f"model {model_row['name']!r} records no training corpus; pass --source SPEC or --corpus NAME")
        blocks = text_blocks(spec, "validation", load_tokenizer(model_row["path"]), settings.block_len, eval_tokens)
    result = evaluation(model, sae, blocks, layer=row["layer"], batch_blocks=batch_blocks, device=device)
    plot_density(result.density, Path(row["path"]) / DENSITY_PLOT, f"{sae_id}: feature density")
    update_sae_metrics(wh, sae_id, result.metrics)
    if saebench is not None:
        from featstore.saes.saebench import core_result, write_core_result

        dataset = f"corpus:{corpus}" if corpus is not None else spec
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        write_core_result(saebench, core_result(sae, result, sae_id=sae_id, model_name=row["model"], dataset=dataset,
                                                llm_dtype=dtype))
    return result.metrics
