"""SAE training throughput: featstore's Trainer.fit, with its sparse and its dense step, against SAELens' trainer and a plain PyTorch loop.

All four train a ReLU SAE with MSE + L1 and Adam (featstore and the plain loop remove the decoder-parallel
gradient and renormalise the decoder; SAELens weights the L1 by the decoder norms instead: below) on the
same pre-computed activation batches (the model forward is not timed), from the same weights, for the same
number of steps, alternately, several rounds, so machine noise hits them alike; at each thread count of
--threads (torch.set_num_threads). The activations are sparse combinations of a planted dictionary of d_sae
unit directions (--active of them per token, magnitudes uniform in [0, 2), plus noise), and every contender
starts from a perturbed copy of it: the steps then run at the sparsity of a trained SAE (L0 about 20 of
2,048 at the tiny shape), as most of a real run does. (From a random start half the features fire, and the
sparse step hands over to the dense one until fewer than featstore.saes.sparse.DENSE_ABOVE do, tens of
steps.) Prints activations/s, the ratios, and the quality each reaches after the same steps (FVU, L0, dead
fraction on held-out batches). The sparse step runs on CPU only; on CUDA it is left out.

"2 SAEs, 1 pass" trains two SAEs from the same start on the same batches with featstore.saes.training.
fit_together, as `featstore run` trains a model's main SAE and its seed replica: with two threads they step
side by side, a thread each. Its activations/s counts both SAEs' activations (two plain loops in two
processes would reach at most twice the plain loop's one-thread rate).

SAELens (sae-lens, a test extra; left out with a one-line note where it is not installed) runs its own code:
sae_lens.SAETrainer.fit on a StandardTrainingSAE (ReLU + L1) fed the same batches as its data provider, its
progress bar muted as featstore's is. Its settings are the closest to ours: the same lr (constant: no
warm-up, no decay), Adam betas, start weights, apply_b_dec_to_input, no activation normalisation, no L1
warm-up, no W&B, evaluation or checkpoints. Its loss is the raw squared error plus its L1 coefficient · |f|
· ||W_dec row||, so with that coefficient --l1 · sqrt(scale) it is `scale` times ours while the decoder rows
are unit norm, which Adam does not see (but for its eps). What cannot be removed: SAELens keeps no
decoder-norm constraint (no renormalisation, no removal of the gradient along the rows: the norms drift, and
the L1 weighting by them stands in), clips the gradient norm to 1 every step (hard-coded; the start's is
about 1.1 at the tiny shape, 0.3 at the smoke one), steps with the unfused Adam (featstore's is fused on
CPU), and counts feature firing every step for its dead-feature statistics (the standard architecture has no
ghost grads). Its final weights are evaluated as they are: a ReLU SAE's FVU and L0 do not depend on how the
scale is split between encoder and decoder.

    python benchmarks/sae_train.py                       # 512 -> 2048, batch 4096 (tiny scale), 1 and 2 threads
    python benchmarks/sae_train.py --d-in 1024 --expansion 16 --batch 3072 --steps 4 --rounds 1  # the paper's shape
    python benchmarks/sae_train.py --smoke               # 64 -> 128, batch 240, 3 steps, 1 round: seconds

The figures and the ratios against the plain loop and SAELens go into a JSON record (benchmarks/record.py),
one per shape and device: docs/benchmarks/sae_train.json (tiny shape, CPU), sae_train_1024x16.json (the
paper's), sae_train_1024x16_cuda.json (the paper's on a GPU).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import itertools
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from unittest import mock

import torch
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.models.hf import resolve_device  # noqa: E402
from featstore.saes import build_sae  # noqa: E402
from featstore.saes.presets import TrainSettings  # noqa: E402
from featstore.saes.training import Trainer, fit_together  # noqa: E402

try:
    from sae_lens import SAETrainer, StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training import sae_trainer
except ImportError as error:  # an optional contender
    SAELENS_MISSING: str | None = str(error)
else:
    SAELENS_MISSING = None

NAMES = {"sparse": "featstore, sparse step", "pass": "featstore, 2 SAEs, 1 pass", "dense": "featstore, dense step",
         "saelens": "SAELens SAETrainer", "plain": "plain PyTorch loop"}
Weights = dict[str, torch.Tensor]


def planted(d_in: int, d_sae: int, batch: int, n_batches: int, active: int, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(batches, dictionary): each activation sums `active` random unit directions of the dictionary."""
    gen = torch.Generator().manual_seed(0)
    dictionary = torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=gen), dim=1)
    batches = []
    for _ in range(n_batches):
        codes = torch.zeros(batch, d_sae).scatter_(1, torch.rand(batch, d_sae, generator=gen).argsort(1)[:, :active],
                                                   torch.rand(batch, active, generator=gen) * 2)
        batches.append((codes @ dictionary + 0.05 * torch.randn(batch, d_in, generator=gen)).to(device))
    return batches, dictionary.to(device)


def start_weights(dictionary: torch.Tensor, threshold: float) -> Weights:
    """A perturbed planted dictionary, the encoder its transpose, firing above `threshold`."""
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(dictionary.shape, generator=gen).to(dictionary.device) / dictionary.shape[1] ** 0.5
    W_dec = torch.nn.functional.normalize(dictionary + 0.5 * noise, dim=1)
    return {"W_enc": W_dec.T.contiguous(), "b_enc": torch.full((len(W_dec),), -threshold, device=W_dec.device),
            "W_dec": W_dec, "b_dec": torch.zeros(W_dec.shape[1], device=W_dec.device)}


def plain_loop(batches: list[torch.Tensor], start: Weights, steps: int, l1: float, lr: float, scale: float) -> tuple[float, Weights]:
    """What one would write by hand: raw tensors, the same loss and constraint, no bookkeeping."""
    W_enc, b_enc, W_dec, b_dec = (start[k].clone().requires_grad_() for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr, betas=(0.9, 0.999))
    begin = time.perf_counter()
    for x in itertools.islice(itertools.cycle(batches), steps):
        f = torch.relu((x - b_dec) @ W_enc + b_enc)
        loss = (f @ W_dec + b_dec - x).pow(2).sum(-1).mean() / scale + l1 * f.sum(-1).mean() / scale**0.5
        opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
        opt.step()
        with torch.no_grad():
            W_dec /= W_dec.norm(dim=1, keepdim=True)
    _sync(batches[0].device)
    return time.perf_counter() - begin, {"W_enc": W_enc, "b_enc": b_enc, "W_dec": W_dec, "b_dec": b_dec}


def featstore_fit(batches: list[torch.Tensor], start: Weights, steps: int, l1: float, lr: float, scale: float,
                  training_step: str, saes: int = 1) -> tuple[float, Weights]:
    """`saes` SAEs from `start` in one pass (fit_together, as a model's main SAE and its seed replicas train);
    the seconds per SAE, so activations/s counts every SAE's activations; the first SAE's weights."""
    d_in, batch = batches[0].shape[1], len(batches[0])
    settings = TrainSettings(expansion=len(start["W_dec"]) // d_in, lr=lr, beta2=0.999, batch_blocks=batch // 24,
                             tokens=steps * batch, resample_every=10**9, training_step=training_step)
    trainers = [Trainer(_sae(start, l1), settings, scale) for _ in range(saes)]
    begin = time.perf_counter()
    fit_together(trainers, itertools.cycle(batches), progress=False)
    _sync(batches[0].device)
    return (time.perf_counter() - begin) / saes, dict(trainers[0].sae.named_parameters())


def saelens_fit(batches: list[torch.Tensor], start: Weights, steps: int, l1: float, lr: float, scale: float) -> tuple[float, Weights]:
    """SAELens' SAETrainer.fit from `start`: its loss is `scale` times ours at unit decoder norms (module docstring)."""
    d_sae, d_in = start["W_dec"].shape
    device, batch = batches[0].device, len(batches[0])
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(
        d_in=d_in, d_sae=d_sae, device=str(device), apply_b_dec_to_input=True, normalize_activations="none",
        decoder_init_norm=None, l1_coefficient=l1 * scale**0.5, l1_warm_up_steps=0))
    sae.load_state_dict({k: v.detach() for k, v in start.items()})
    cfg = SAETrainerConfig(total_training_samples=steps * batch, train_batch_size_samples=batch, lr=lr, lr_end=lr,
                           lr_scheduler_name="constant", lr_warm_up_steps=0, lr_decay_steps=0, adam_beta1=0.9,
                           adam_beta2=0.999, device=str(device), feature_sampling_window=10**9)
    begin = time.perf_counter()
    with mock.patch.object(sae_trainer, "tqdm", partial(tqdm, disable=True)):
        SAETrainer(cfg, sae, itertools.cycle(batches)).fit()
    _sync(device)
    return time.perf_counter() - begin, {k: v.detach() for k, v in sae.named_parameters()}


def _sae(weights: Weights, l1: float | None = None):
    d_sae, d_in = weights["W_dec"].shape
    sae = build_sae("relu", d_in=d_in, d_sae=d_sae, l1_coefficient=l1).to(weights["W_dec"].device)
    sae.load_state_dict({k: v.detach() for k, v in weights.items()})
    return sae


@torch.no_grad()
def quality(weights: Weights, held_out: list[torch.Tensor]) -> dict:
    """FVU, mean L0 and the fraction of features that never fire, on `held_out`."""
    sae = _sae(weights)
    fired = torch.zeros(len(weights["W_dec"]), dtype=torch.bool, device=weights["W_dec"].device)
    err = var = l0 = 0.0
    for x in held_out:
        recon, feats = sae(x)
        err += float((recon - x).pow(2).sum())
        var += float((x - x.mean(dim=0)).pow(2).sum())
        l0 += float((feats > 0).sum())
        fired |= (feats > 0).any(dim=0)
    return {"fvu": err / var, "l0": l0 / sum(len(x) for x in held_out), "dead_fraction": 1 - float(fired.float().mean())}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4096, help="activations per step (a multiple of 24)")
    parser.add_argument("--active", type=int, default=20, help="planted directions per activation")
    parser.add_argument("--threshold", type=float, default=0.7, help="pre-activation at which the start's features fire")
    parser.add_argument("--l1", type=float, default=0.15, help="L1 coefficient (keeps L0 near the tiny run's 17-28 here)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the tiny preset's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2],
                        help="comma-separated torch thread counts")
    parser.add_argument("--device", default=None)
    args = parse_args(parser, smoke=dict(d_in=64, expansion=2, batch=240, active=2, steps=3, rounds=1))
    load_start = os.getloadavg()
    batch = args.batch // 24 * 24
    device = resolve_device(args.device)
    d_sae = args.d_in * args.expansion
    data, dictionary = planted(args.d_in, d_sae, batch, 8, args.active, device)
    batches, held_out = data[:4], data[4:]
    start = start_weights(dictionary, args.threshold)
    common = dict(batches=batches, start=start, l1=args.l1, lr=args.lr, scale=float(batches[0].pow(2).sum(-1).mean()))
    contenders = {"sparse": partial(featstore_fit, training_step="sparse"),
                  "pass": partial(featstore_fit, training_step="sparse", saes=2),
                  "dense": partial(featstore_fit, training_step="dense"), "saelens": saelens_fit, "plain": plain_loop}
    if device.type != "cpu":
        del contenders["sparse"], contenders["pass"]
    if SAELENS_MISSING:
        print(f"SAELens' trainer left out: sae_lens is not importable ({SAELENS_MISSING})")
        del contenders["saelens"]
    rate, quality_of = {}, {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, (value, reached) in measure(contenders, common, args.steps, args.rounds, held_out).items():
            rate[name, threads], quality_of[name, threads] = value, reached
    report(args, device, batch, d_sae, rate, quality_of, quality(start, held_out), load_start)


def measure(contenders: dict, common: dict, steps: int, rounds: int, held_out: list[torch.Tensor]) -> dict:
    """{name: (activations/s, quality)}: the median of `rounds` alternating runs, the quality of the last."""
    for run in contenders.values():
        run(**common, steps=min(3, steps))  # warm-up (allocator, kernels)
    times, trained = {name: [] for name in contenders}, {}
    for _ in range(rounds):
        for name, run in contenders.items():
            seconds, trained[name] = run(**common, steps=steps)
            times[name].append(seconds)
    tokens = steps * len(common["batches"][0])
    return {name: (tokens / statistics.median(times[name]), quality(trained[name], held_out)) for name in contenders}


def report(args, device, batch: int, d_sae: int, rate: dict, quality_of: dict, start: dict, load_start) -> None:
    """Print the table and write the record."""
    print(f"device {device}, {args.d_in} -> {d_sae}, batch {batch}, {args.steps} steps x {args.rounds} rounds (median),"
          f" load average at start {' '.join(f'{v:.2f}' for v in load_start)}")
    print(f"start (all trainers): FVU {start['fvu']:.3f}, L0 {start['l0']:.1f}, dead {start['dead_fraction']:.3f}")
    print(f"{'threads':>7}  {'trainer':<24}{'activations/s':>14}{'x plain':>9}{'x SAELens':>10}{'FVU':>8}{'L0':>7}{'dead':>7}")
    figures, ratios = {"batch_used": batch, "d_sae": d_sae, **{f"start_{k}": v for k, v in start.items()}}, {}
    for (name, threads), value in rate.items():
        q = quality_of[name, threads]
        over = value / rate["plain", threads]
        over_saelens = value / rate["saelens", threads] if ("saelens", threads) in rate else None
        print(f"{threads:>7}  {NAMES[name]:<24}{value:>14,.0f}{over:>9.2f}"
              f"{'-' if over_saelens is None else f'{over_saelens:.2f}':>10}{q['fvu']:>8.3f}{q['l0']:>7.1f}{q['dead_fraction']:>7.3f}")
        figures[f"{name}_{threads}t_activations_per_s"] = value
        figures.update({f"{name}_{threads}t_{k}": v for k, v in q.items()})
        if name != "plain":
            ratios[f"{name}_over_plain_{threads}t_activations_per_s"] = over
        if over_saelens is not None and name in ("sparse", "pass", "dense"):
            ratios[f"{name}_over_saelens_{threads}t_activations_per_s"] = over_saelens
    print("targets on CPU: featstore's sparse step >= 3x the plain loop's activations/s at the tiny shape, >= 2x SAELens' trainer's")
    print(f"load average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    saelens = None if SAELENS_MISSING else importlib.metadata.version("sae-lens")
    write_record(record_name(args.d_in, args.expansion, device), figures, ratios, {**settings_of(args), "device_used": str(device), "sae_lens_version": saelens},
                 args.out, load_start=load_start)


def record_name(d_in: int, expansion: int, device: torch.device) -> str:
    """One record per shape and device kind: sae_train (the tiny shape on CPU), sae_train_1024x16_cuda, ..."""
    shape = "" if (d_in, expansion) == (512, 4) else f"_{d_in}x{expansion}"
    return f"sae_train{shape}{'' if device.type == 'cpu' else '_' + device.type}"


if __name__ == "__main__":
    main()
