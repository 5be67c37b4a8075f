"""SAE training: decoder constraint, resampling, TopK, geometric median, and the warehouse run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import run_cli, tiny_texts

from featstore.errors import FeatstoreError
from featstore.saes import load_sae
from featstore.saes.presets import sae_preset
from featstore.saes.training import (
    Trainer,
    config_for,
    geometric_median,
    init_sae,
    train_sae,
)


def synthetic_batches(d_in=16, n_true=32, batch=256, seed=0):
    """Sparse combinations of a hidden dictionary: what an SAE should be able to recover."""
    gen = torch.Generator().manual_seed(seed)
    true = torch.nn.functional.normalize(torch.randn(n_true, d_in, generator=gen), dim=1)
    while True:
        codes = torch.rand(batch, n_true, generator=gen) * (torch.rand(batch, n_true, generator=gen) < 0.1)
        yield codes @ true + 0.5


def small_trainer(arch="relu", k=None, resample_every=10_000, steps=150):
    settings = sae_preset("tiny", architecture=arch, k=k, lr=3e-3, tokens=steps * 24, batch_blocks=1,
                            resample_every=resample_every, l1_coefficient=0.3)
    batches = synthetic_batches()
    sample = next(batches)
    sae = init_sae(config_for(settings, d_in=16), sample, seed=0)  # 16 -> 64 (the tiny preset's 4x)
    scale = float((sample - sae.b_dec.detach()).pow(2).sum(-1).mean())
    return Trainer(sae, settings, scale), batches


def test_decoder_vectors_stay_unit_norm_and_loss_falls():
    trainer, batches = small_trainer()
    with torch.no_grad():
        first = float(trainer.loss(next(batches))[1])
    stats = trainer.fit(batches, progress=False)
    norms = trainer.sae.W_dec.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert stats["train_fvu"] < 0.5 * first


def test_resampling_revives_dead_features():
    def run(resample_every):
        trainer, batches = small_trainer(resample_every=resample_every, steps=120)
        with torch.no_grad():
            trainer.sae.b_enc[:20] = -1e3  # these can never fire on their own
        trainer.fit(batches, progress=False)
        fired = (trainer.sae.encode(torch.cat([next(batches) for _ in range(4)])) > 0).any(dim=0)
        return trainer, fired

    without, fired = run(resample_every=10_000)
    assert not fired[:20].any() and without.resampled == 0
    with_resampling, fired = run(resample_every=25)
    assert with_resampling.resampled >= 20
    assert fired[:20].float().mean() >= 0.9


def test_resampling_resets_adam_state_of_resampled_features():
    trainer, batches = small_trainer()
    for _ in range(5):
        trainer.step(next(batches))
    dead = torch.tensor([1, 2, 3])
    trainer.resample(dead, next(batches))
    state = trainer.optimizer.state[trainer.sae.W_dec]
    assert state["exp_avg"][dead].abs().sum() == 0 and state["exp_avg_sq"][dead].abs().sum() == 0
    assert state["exp_avg"][4:].abs().sum() > 0


def test_topk_training_keeps_exactly_k():
    trainer, batches = small_trainer(arch="topk", k=4, steps=60)
    trainer.fit(batches, progress=False)
    counts = (trainer.sae.encode(next(batches)) > 0).sum(dim=-1)
    assert counts.max() <= 4 and (counts == 4).float().mean() > 0.95


def test_geometric_median_resists_outliers():
    torch.manual_seed(0)
    cluster = torch.randn(200, 3) * 0.1
    points = torch.cat([cluster, torch.full((20, 3), 100.0)])
    median = geometric_median(points)
    assert median.norm() < 0.5 < points.mean(dim=0).norm()
    # Optimality: the unit vectors from the median to the points cancel out.
    pull = torch.nn.functional.normalize(points - median, dim=1).sum(dim=0)
    assert pull.norm() < 1.0


# -- warehouse runs ---------------------------------------------------------------------------------

TINY = dict(tokens=24 * 16 * 12, batch_blocks=16, expansion=2, eval_tokens=24 * 16, resample_every=5)


def test_train_registers_evaluated_sae(trainable_warehouse):
    row = train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY), device="cpu", progress=False)
    assert row["id"] == "m-relu-x2-s0" and row["is_primary"] and row["d_in"] == 64 and row["d_sae"] == 128
    m = row["metrics"]
    for key in ("mse", "fvu", "l0", "dead_fraction", "ce_loss_recovered", "density_histogram"):
        assert key in m
    assert 0 <= m["dead_fraction"] <= 1 and m["l0"] > 0 and np.isfinite(m["fvu"])
    assert sum(m["density_histogram"]["counts"]) + m["density_histogram"]["never_fired"] == 128
    folder = trainable_warehouse.root / "saes" / row["id"]
    assert {p.name for p in folder.iterdir()} >= {"sae_weights.safetensors", "cfg.json", "sae_init.safetensors", "feature_density.png"}
    assert load_sae(folder).cfg.model_name == "m"

    second = train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY, seed=1), device="cpu", progress=False)
    assert not second["is_primary"], "a second seed is a noise-floor SAE, not the model's primary one"

    same = train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY, seed=2), same_init_as=row["id"],
                     sae_id="m-same", device="cpu", progress=False)
    from safetensors.torch import load_file

    a = load_file(str(folder / "sae_init.safetensors"))
    b = load_file(str(trainable_warehouse.root / "saes" / same["id"] / "sae_init.safetensors"))
    torch.testing.assert_close(a["W_dec"], b["W_dec"])
    torch.testing.assert_close(a["W_enc"], b["W_enc"])


def test_interrupted_training_registers_nothing(trainable_warehouse, monkeypatch):
    from featstore.saes import training as sae_train

    def killed(self, x):
        raise KeyboardInterrupt

    monkeypatch.setattr(sae_train.Trainer, "train_on", killed)
    with pytest.raises(KeyboardInterrupt):
        train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY), device="cpu", progress=False)
    assert trainable_warehouse.scalar("SELECT count(*) FROM saes") == 0
    assert not any((trainable_warehouse.root / "saes").iterdir())


def test_bad_input_is_a_one_line_error(trainable_warehouse):
    with pytest.raises(FeatstoreError, match="unknown model 'nope'"):
        train_sae(trainable_warehouse, "nope", settings=sae_preset("tiny", **TINY), progress=False)
    with pytest.raises(FeatstoreError, match="needs --k"):
        sae_preset("tiny", architecture="topk")
    with pytest.raises(FeatstoreError, match="unknown SAE"):
        train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY), same_init_as="ghost", progress=False)
    assert trainable_warehouse.scalar("SELECT count(*) FROM saes") == 0


def test_cli_train_then_eval(trainable_warehouse):
    result = run_cli(trainable_warehouse, "sae", "train", "m", "--arch", "topk", "--k", "4", "--expansion", "2",
                     "--tokens", str(24 * 16 * 6), "--batch-blocks", "16", "--id", "m-topk", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "m-topk" in result.output and "fvu" in result.output
    result = run_cli(trainable_warehouse, "sae", "eval", "m-topk", "--tokens", "240", "--device", "cpu")
    assert result.exit_code == 0, result.output
    metrics = json.loads(trainable_warehouse.scalar("SELECT metrics FROM saes WHERE id = 'm-topk'"))
    assert metrics["eval_tokens"] == 240 and metrics["l0"] <= 4
    result = run_cli(trainable_warehouse, "sae", "eval", "ghost")
    assert result.exit_code == 1 and result.output.strip() == "error: unknown SAE 'ghost'; see `featstore saes`"


def test_train_on_a_warehouse_corpus_checks_its_tokenizer(trainable_warehouse, tmp_path, tiny_tokenizer_dir):
    from featstore.text.slices import add_corpus
    from featstore.text.tokenizer import train_bpe

    (tmp_path / "c.txt").write_text("\n\n".join(tiny_texts(60, seed=4)))
    add_corpus(trainable_warehouse, "c", str(tmp_path / "c.txt"), tiny_tokenizer_dir)
    row = train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY), corpus="c", sae_id="m-c", device="cpu", progress=False)
    assert row["metrics"]["eval_tokens"] > 0 and load_sae(row["path"]).cfg.extra["source"] == "corpus:c"

    train_bpe(tiny_texts(50, seed=9), vocab_size=300, out_dir=tmp_path / "other_tok")
    add_corpus(trainable_warehouse, "other", str(tmp_path / "c.txt"), tmp_path / "other_tok")
    with pytest.raises(FeatstoreError, match="tokenized with tokenizer"):
        train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY), corpus="other", sae_id="m-o", progress=False)
    assert trainable_warehouse.scalar("SELECT count(*) FROM saes WHERE id = 'm-o'") == 0


def test_seed_replica_differs_only_in_seed(trainable_warehouse):
    from safetensors.torch import load_file

    first = train_sae(trainable_warehouse, "m", settings=sae_preset("tiny", **TINY), device="cpu", progress=False)
    base = ["sae", "train", "m", "--seed-of", first["id"]]
    result = run_cli(trainable_warehouse, *base, "--seed", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    replica = trainable_warehouse.query("SELECT * FROM saes WHERE seed_of = ?", [first["id"]]).to_pylist()
    assert [(r["id"], r["seed"], r["is_primary"]) for r in replica] == [(f"{first['id']}-seed3", 3, False)]
    ours, theirs = (load_sae(trainable_warehouse.root / "saes" / i).cfg.extra for i in (first["id"], replica[0]["id"]))
    assert {**theirs["settings"], "seed": 0, "data_seed": None} == ours["settings"]  # same settings but the seed
    assert theirs["settings"]["data_seed"] == 0 and theirs["source"] == ours["source"]  # same text, same batch order
    inits = [load_file(str(trainable_warehouse.root / "saes" / i / "sae_init.safetensors"))["W_dec"] for i in (first["id"], replica[0]["id"])]
    assert not torch.allclose(*inits)
    assert trainable_warehouse.scalar("SELECT sae FROM primary_saes WHERE model = 'm'") == first["id"]

    result = run_cli(trainable_warehouse, *base, "--seed", "4", "--expansion", "4")
    assert result.exit_code == 1 and "--seed-of takes every setting from that SAE; drop --expansion" in result.output
    result = run_cli(trainable_warehouse, *base, "--seed", "0")
    assert result.exit_code == 1 and "give its replica another --seed" in result.output
    with pytest.raises(FeatstoreError, match="its d_sae differ"):
        from featstore.saes.catalog import register_sae

        register_sae(trainable_warehouse, "odd", "m", None, hook_point="blocks.0.mlp.hook_post", layer=0, d_in=64, d_sae=64,
                     architecture="relu", seed=5, is_primary=False, seed_of=first["id"])
    assert trainable_warehouse.scalar("SELECT count(*) FROM saes") == 2


def test_saes_of_one_model_train_in_one_pass_as_if_alone(trainable_warehouse, monkeypatch):
    """A primary, its seed replica and a TopK SAE reading the same text train side by side (two worker
    threads) on one capture of each batch, and end with exactly the weights (and resampling) each gets
    when trained alone."""
    from safetensors.torch import load_file

    from featstore.saes import training as sae_train

    forwards = []
    capture = sae_train.iter_mlp_activations
    monkeypatch.setattr(sae_train, "iter_mlp_activations", lambda *a, **kw: (forwards.append(1) or x for x in capture(*a, **kw)))
    # an L1 this strong silences features after a few steps, so resampling runs at step 20
    strong = dict(TINY, tokens=24 * 16 * 25, resample_every=10, l1_coefficient=20.0, lr=0.05)
    settings = {"main": sae_preset("tiny", **strong), "replica": sae_preset("tiny", **strong, seed=7, data_seed=0),
                "topk": sae_preset("tiny", **strong, architecture="topk", k=4, seed=3, data_seed=0)}
    runs = [sae_train.SAERun(f"together-{name}", s, seed_of="together-main" if name == "replica" else None)
            for name, s in settings.items()]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the SAEs step side by side, a thread each (fit_together)
    try:
        rows = sae_train.train_saes(trainable_warehouse, "m", runs, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    shared_forwards, forwards[:] = len(forwards), []
    for name, s in settings.items():
        train_sae(trainable_warehouse, "m", settings=s, sae_id=f"alone-{name}", device="cpu", progress=False,
                  seed_of="alone-main" if name == "replica" else None)
    assert shared_forwards * 3 == len(forwards)
    assert [r["is_primary"] for r in rows] == [True, False, False] and rows[1]["seed_of"] == "together-main"
    assert all(r["metrics"]["resampled_features"] > 0 for r in rows)
    for name in settings:
        together, alone = (load_file(str(trainable_warehouse.root / "saes" / f"{how}-{name}" / "sae_weights.safetensors"))
                           for how in ("together", "alone"))
        for tensor in together:
            torch.testing.assert_close(together[tensor], alone[tensor], rtol=0, atol=0)


def test_saes_reading_different_text_take_separate_passes(trainable_warehouse):
    from featstore.saes.training import SAERun, train_saes

    runs = [SAERun("a", sae_preset("tiny", **TINY)), SAERun("b", sae_preset("tiny", **{**TINY, "tokens": TINY["tokens"] // 2}))]
    rows = train_saes(trainable_warehouse, "m", runs, device="cpu", progress=False)
    assert [r["train_tokens"] for r in rows] == [TINY["tokens"], TINY["tokens"] // 2]
    with pytest.raises(FeatstoreError, match="'a' already exists"):
        train_saes(trainable_warehouse, "m", [SAERun("c", sae_preset("tiny", **TINY)), SAERun("a", sae_preset("tiny", **TINY))],
                   progress=False)
    assert trainable_warehouse.scalar("SELECT count(*) FROM saes") == 2
