"""SAE training throughput: featstore's Trainer.fit against a plain PyTorch loop of the same shapes.

Both consume the same pre-computed activation batches (the model forward is not timed), do the same
math (ReLU SAE, MSE + L1, decoder-parallel gradient removed, Adam, decoder renormalised) and run
alternately, several rounds, so machine noise hits both alike. Prints activations/s and the ratio.

    python benchmarks/sae_train.py                       # 512 -> 2048, batch 4096 (tiny scale)
    python benchmarks/sae_train.py --d-in 1024 --expansion 16 --batch 3072   # the paper's shapes
    python benchmarks/sae_train.py --smoke               # 64 -> 128, batch 240, 3 steps, 1 round: seconds

The figures and the ratio featstore / plain go into a JSON record (benchmarks/record.py;
docs/benchmarks/sae_train.json at full size).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import parse_args, settings_of, write_record  # noqa: E402

from featstore.models.hf import resolve_device  # noqa: E402
from featstore.saes import build_sae  # noqa: E402
from featstore.saes.presets import TrainSettings  # noqa: E402
from featstore.saes.training import Trainer  # noqa: E402


def plain_loop(batches: list[torch.Tensor], d_sae: int, steps: int, l1: float, lr: float, scale: float) -> float:
    """What one would write by hand: raw tensors, the same loss and constraint, no bookkeeping."""
    d_in, device = batches[0].shape[1], batches[0].device
    W_dec = torch.nn.functional.normalize(torch.randn(d_sae, d_in, device=device), dim=1).requires_grad_()
    W_enc = W_dec.detach().T.contiguous().requires_grad_()  # same layout as featstore's SAE
    b_enc = torch.zeros(d_sae, device=device, requires_grad=True)
    b_dec = torch.zeros(d_in, device=device, requires_grad=True)
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_dec], lr=lr, betas=(0.9, 0.999))
    start = time.perf_counter()
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
    _sync(device)
    return time.perf_counter() - start


def featstore_fit(batches: list[torch.Tensor], d_sae: int, steps: int, l1: float, lr: float, scale: float) -> float:
    d_in, device = batches[0].shape[1], batches[0].device
    settings = TrainSettings(expansion=d_sae // d_in, lr=lr, beta2=0.999,
                             batch_blocks=len(batches[0]) // 24, tokens=steps * len(batches[0]), resample_every=10**9)
    sae = build_sae("relu", d_in=d_in, d_sae=d_sae, l1_coefficient=l1).to(device)
    trainer = Trainer(sae, settings, scale)
    start = time.perf_counter()
    trainer.fit(itertools.cycle(batches), progress=False)
    _sync(device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d-in", type=int, default=512)
    parser.add_argument("--expansion", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4096, help="activations per step (a multiple of 24)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default=None)
    args = parse_args(parser, smoke=dict(d_in=64, expansion=2, batch=240, steps=3, rounds=1))
    load_start = os.getloadavg()
    batch = args.batch // 24 * 24
    device = resolve_device(args.device)
    torch.manual_seed(0)
    batches = [torch.relu(torch.randn(batch, args.d_in, device=device)) for _ in range(4)]
    d_sae, scale = args.d_in * args.expansion, float(batches[0].pow(2).sum(-1).mean())
    common = dict(d_sae=d_sae, steps=args.steps, l1=1.0, lr=1e-4, scale=scale)
    featstore_fit(batches, **{**common, "steps": 5})  # warm-up (allocator, kernels)
    plain_loop(batches, **{**common, "steps": 5})
    times = {"featstore": [], "plain": []}
    for _ in range(args.rounds):
        times["featstore"].append(featstore_fit(batches, **common))
        times["plain"].append(plain_loop(batches, **common))
    rate = {k: args.steps * batch / statistics.median(v) for k, v in times.items()}
    print(f"device {device}, {args.d_in} -> {d_sae}, batch {batch}, {args.steps} steps x {args.rounds} rounds (median)")
    print(f"featstore Trainer.fit : {rate['featstore']:>12,.0f} activations/s")
    print(f"plain PyTorch loop    : {rate['plain']:>12,.0f} activations/s")
    print(f"featstore / plain     : {rate['featstore'] / rate['plain']:.3f}  (target >= 0.90)")
    figures = {"batch_used": batch, "d_sae": d_sae,
               **{f"{k}_activations_per_s": v for k, v in rate.items()},
               **{f"{k}_median_seconds": statistics.median(v) for k, v in times.items()}}
    write_record("sae_train", figures, {"featstore_over_plain_activations_per_s": rate["featstore"] / rate["plain"]},
                 {**settings_of(args), "device_used": str(device)}, args.out, load_start=load_start)


if __name__ == "__main__":
    main()
