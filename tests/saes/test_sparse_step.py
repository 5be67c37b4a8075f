"""The sparse training step (featstore.saes.sparse) against the dense reference, for every trainable architecture.

Both compute the same pre-activations, to the bit (the same product, the same bias addition), so the
same features fire; from there the sparse step sums the same float32 terms in another order (per token
or per feature instead of in a BLAS tile). A float32 sum of n terms in any order is within n·2⁻²⁴·Σ|terms| of the exact sum; here
n <= 240 tokens, so each entry agrees to 1.4e-5 of the sum of its absolute terms: RTOL, taken against
the largest entry. After N steps: Adam's update m̂/(√v̂ + ε) inherits the gradients' relative error
(at most 2·RTOL) and moves a weight by at most lr, so the two paths' weights stay within N·lr·2·RTOL
(40 steps at lr 3e-3: 3.5e-6), against a largest entry of at least 0.25 (a unit row of 16): STEPS_RTOL.
After the first step the weights differ by rounding, and a pre-activation within rounding of a firing
boundary could then flip a discrete choice (fire or not, which input a resampled feature points at);
with these seeds none does, and the observed differences are about 1e-7.
"""

from __future__ import annotations

import pytest
import torch

import featstore.saes.base as sae_base
from featstore.errors import FeatstoreError
from featstore.saes import ARCHITECTURES
from featstore.saes.presets import sae_preset
from featstore.saes.sparse import above, decode, top_k
from featstore.saes.training import Trainer, config_for, init_sae, sparse_step

D_IN, BATCH, STEPS, LR = 16, 240, 40, 3e-3
RTOL = BATCH * 2**-24  # n·ε, relative to the largest entry
STEPS_RTOL = STEPS * LR * 2 * RTOL / 0.25

OPTIONS = {"relu": {"l1_coefficient": 0.3}, "topk": {"k": 4}, "jumprelu": {"l0_coefficient": 0.01}}


def planted_batches(seed=0):
    """Sparse combinations of a hidden dictionary of 32 directions (about 3 per token), shifted off zero."""
    gen = torch.Generator().manual_seed(seed)
    true = torch.nn.functional.normalize(torch.randn(32, D_IN, generator=gen), dim=1)
    while True:
        codes = torch.rand(BATCH, 32, generator=gen) * (torch.rand(BATCH, 32, generator=gen) < 0.1)
        yield codes @ true + 0.5


def trainer(arch: str, training_step: str, resample_every: int = 10) -> tuple[Trainer, object]:
    settings = sae_preset("tiny", architecture=arch, lr=LR, tokens=STEPS * BATCH, batch_blocks=BATCH // 24,
                          resample_every=resample_every, training_step=training_step, **OPTIONS[arch])
    batches = planted_batches()
    sample = next(batches)
    sae = init_sae(config_for(settings, d_in=D_IN), sample, seed=0)  # 16 -> 64
    with torch.no_grad():
        sae.b_enc.fill_(-0.3)  # a start that fires a few features per token, as a trained SAE does
        sae.b_enc[:4] = -1e3  # and some that never fire: resampled after `resample_every` steps
    scale = float((sample - sae.b_dec.detach()).pow(2).sum(-1).mean())
    return Trainer(sae, settings, scale), batches


def trained(arch: str, training_step: str) -> tuple[Trainer, dict]:
    run, batches = trainer(arch, training_step)
    torch.manual_seed(1)  # resampling draws its inputs from torch's generator
    return run, run.fit(batches, progress=False)


def tokens(pairs) -> torch.Tensor:
    """Each pair's token."""
    return torch.repeat_interleave(torch.arange(pairs.n_tokens), pairs.offsets.diff())


def assert_near(sparse: torch.Tensor, dense: torch.Tensor, rtol: float, what: str) -> None:
    torch.testing.assert_close(sparse, dense, rtol=0, atol=rtol * float(dense.abs().max()), msg=what)


@pytest.fixture(autouse=True)
def always_sparse(monkeypatch):
    """Compare the sparse kernels themselves, even on steps whose density would hand over to the dense step."""
    monkeypatch.setattr(sae_base, "DENSE_ABOVE", 1.0)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_one_step_matches_the_dense_reference(arch):
    run, batches = trainer(arch, "sparse")
    sae, x = run.sae, next(batches)
    results = {}
    for name, loss_of in (("dense", sae.training_loss), ("sparse", sae.sparse_training_loss)):
        sae.zero_grad(set_to_none=True)
        loss, mse, activity = loss_of(x, run.scale)
        loss.backward()
        results[name] = loss.detach(), mse.detach(), activity, {n: p.grad.clone() for n, p in sae.named_parameters()}
    (loss, mse, dense, grads), (sparse_loss, sparse_mse, sparse, sparse_grads) = results["dense"], results["sparse"]
    assert 0 < float(dense.l0()) < 0.5 * sae.cfg.d_sae, "the start must be sparse"
    assert_near(sparse_loss, loss, RTOL, "loss")
    assert_near(sparse_mse, mse, RTOL, "mse")
    assert torch.equal(sparse.fired, dense.fired) and float(sparse.l0()) == float(dense.l0())
    assert set(sparse_grads) == set(grads)
    for name, grad in grads.items():
        assert grad.abs().max() > 0, f"{name} gets no gradient"
        assert_near(sparse_grads[name], grad, RTOL, f"gradient of {name}")


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_weights_after_training_match_the_dense_reference(arch):
    """Trainer.fit with resampling (every 10 steps) ends at the same weights and statistics by either step."""
    (dense, dense_stats), (sparse, sparse_stats) = trained(arch, "dense"), trained(arch, "sparse")
    assert not dense.sparse and sparse.sparse
    assert dense.resampled == sparse.resampled >= 4
    assert sparse_stats["train_l0"] == dense_stats["train_l0"]
    assert sparse_stats["train_fvu"] == pytest.approx(dense_stats["train_fvu"], rel=STEPS_RTOL)
    for name, weight in dense.sae.named_parameters():
        assert_near(dict(sparse.sae.named_parameters())[name].detach(), weight.detach(), STEPS_RTOL, name)


def test_jumprelu_pairs_hold_the_kernel_window_below_the_threshold():
    """Inactive pre-activations within ε/2 under θ pass the straight-through gradient to θ: the sparse step keeps them."""
    run, batches = trainer("jumprelu", "sparse")
    sae = run.sae
    with torch.no_grad():
        x = next(batches)
        pairs, values = sae.training_pairs(sae.centred(x) @ sae.W_enc, run.scale)
        pre, threshold, half = sae.pre_activation(x), sae.threshold, sae.bandwidth(run.scale) / 2
        needed = (pre > threshold) | ((pre - threshold).abs() < half)
    kept = torch.zeros_like(needed)
    kept[tokens(pairs), pairs.features] = True
    assert (kept | ~needed).all(), "a pair the dense step's gradient needs is missing"
    assert (needed & (pre <= threshold)).any(), "the window below θ must be exercised"


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_the_pairs_hold_the_dense_pre_activations_to_the_bit(arch):
    run, batches = trainer(arch, "sparse")
    sae, x = run.sae, next(batches)
    with torch.no_grad():
        pairs, values = sae.training_pairs(sae.centred(x) @ sae.W_enc, run.scale)
        assert torch.equal(values, sae.pre_activation(x)[tokens(pairs), pairs.features])


def test_a_dense_step_is_handed_to_the_dense_path(monkeypatch):
    """Above DENSE_ABOVE of the pairs in play, the sparse step is the dense one, to the bit."""
    monkeypatch.setattr(sae_base, "DENSE_ABOVE", 0.0)
    run, batches = trainer("relu", "sparse")
    x = next(batches)
    dense, sparse = run.sae.training_loss(x, run.scale), run.sae.sparse_training_loss(x, run.scale)
    assert torch.equal(dense[0], sparse[0]) and torch.equal(dense[2].fired, sparse[2].fired)


def test_top_k_pairs_are_torch_topk_less_the_non_positive():
    product, bias = torch.randn(50, 40), torch.randn(40) * 0.1
    product[0] = -1.0 - torch.rand(40)  # no positive entry: no pair
    product[1, :3] = torch.rand(3) + 0.5  # fewer than k positive ones
    product[1, 3:] = -0.5 - torch.rand(37)
    pre = product + bias
    pairs, values = top_k(product, bias, 5)
    values_ref, index = pre.topk(5, dim=1)
    for t in range(len(pre)):
        keep = values_ref[t] > 0
        got = pairs.features[pairs.offsets[t]:pairs.offsets[t + 1]]
        assert sorted(got.tolist()) == sorted(index[t][keep].tolist())
        assert torch.equal(pre[t, got], values[pairs.offsets[t]:pairs.offsets[t + 1]])


def test_threads_split_the_kernels_without_changing_a_bit(monkeypatch):
    """Token ranges and feature ranges on two threads give the one-thread results exactly (each row and
    each feature sums in the same order)."""
    gen = torch.Generator().manual_seed(0)
    product, W, grad = (torch.randn(*shape, generator=gen) for shape in ((600, 700), (700, 32), (600, 32)))
    bias = torch.full((700,), -2.0)
    results = []
    for threads in (1, 2):
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
        pairs, values = above(product, bias, torch.zeros(700))
        feats = values.clone().requires_grad_()
        weight = W.clone().requires_grad_()
        out = decode(feats, pairs, weight)
        out.backward(grad)
        results.append((pairs.features, values, out.detach(), feats.grad, weight.grad))
    assert len(results[0][0]) > 1000
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_the_training_step_setting_picks_a_path_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert sparse_step("auto", cpu) and sparse_step("sparse", cpu)
    assert not sparse_step("auto", cuda) and not sparse_step("dense", cpu) and not sparse_step("dense", cuda)
    with pytest.raises(FeatstoreError, match="runs on CPU"):
        sparse_step("sparse", cuda)
    with pytest.raises(FeatstoreError, match="unknown training step"):
        sparse_step("fast", cpu)
