"""Merging: SLERP against an independent formula, exact endpoints, lineage, refusals, the sweep."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from helpers import run_cli
from safetensors.torch import load_file

from featstore.errors import FeatstoreError
from featstore.models.merge import lerp, merge_state_dicts, slerp


def reference_slerp(t: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shoemake's formula written out: angle between the unit vectors, weights sin((1-t)θ)/sin θ, sin(tθ)/sin θ."""
    ua, ub = a.ravel() / np.linalg.norm(a), b.ravel() / np.linalg.norm(b)
    theta = np.arccos(np.clip(ua @ ub, -1, 1))
    return (np.sin((1 - t) * theta) * a + np.sin(t * theta) * b) / np.sin(theta)


@pytest.mark.parametrize("t", [0.0, 0.1, 0.3, 0.58, 0.9, 1.0])
def test_slerp_matches_the_formula_on_random_tensors(t):
    gen = torch.Generator().manual_seed(int(t * 100))
    a, b = torch.randn(16, 8, generator=gen), 3 * torch.randn(16, 8, generator=gen)
    expected = reference_slerp(t, a.double().numpy(), b.double().numpy())
    np.testing.assert_allclose(slerp(t, a, b).double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_slerp_geometry_and_parallel_fallback():
    x, y = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    half = slerp(0.5, x, y)
    assert torch.allclose(half, torch.tensor([2**-0.5, 2**-0.5]))  # stays on the circle, unlike lerp
    assert torch.allclose(lerp(0.5, x, y), torch.tensor([0.5, 0.5]))
    a = torch.randn(50)
    nearly = a * 2 + 1e-6 * torch.randn(50)
    assert torch.allclose(slerp(0.25, a, nearly), lerp(0.25, a, nearly))


def test_endpoints_are_exact(tiny_model_dir):
    state = load_file(str(tiny_model_dir / "model.safetensors"))
    other = {k: v + torch.randn_like(v) for k, v in state.items()}
    for method in ("slerp", "linear"):
        at0, at1 = merge_state_dicts(state, other, 0.0, method), merge_state_dicts(state, other, 1.0, method)
        assert all(torch.equal(at0[k], state[k]) for k in state)
        assert all(torch.equal(at1[k], other[k]) for k in state)
    with pytest.raises(FeatstoreError, match="between 0 and 1"):
        merge_state_dicts(state, other, 1.5)


@pytest.fixture
def two_finetunes(warehouse, tiny_model_dir, tmp_path):
    """base -> a, base -> b: random Mistral folders sharing the fixture tokenizer, registered with corpora."""
    from transformers import AutoModelForCausalLM

    from featstore.models.catalog import register_model

    register_model(warehouse, "base", tiny_model_dir, kind="base", train_corpus="generated:childes?docs=60")
    for name, seed, corpus in (("a", 1, "generated:lua?docs=60"), ("b", 2, "generated:stories?docs=200")):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        folder = tmp_path / name
        model.save_pretrained(folder)
        for f in tiny_model_dir.glob("tokenizer*"):
            shutil.copy(f, folder)
        register_model(warehouse, name, folder, kind="finetune", parents=["base"], train_corpus=corpus)
    return warehouse


def test_merge_command_writes_registers_and_records_lineage(two_finetunes):
    from featstore.models.catalog import get_model

    wh = two_finetunes
    for t, name, endpoint in ((0.0, "m0", "a"), (1.0, "m1", "b"), (0.58, "m58", None)):
        result = run_cli(wh, "merge", "a", "b", "--method", "slerp", "--t", str(t), "--name", name, "--device", "cpu")
        assert result.exit_code == 0, result.output
        merged = load_file(str(wh.root / "models" / name / "model.safetensors"))
        if endpoint:
            source = load_file(str(wh.root.parent / endpoint / "model.safetensors"))
            assert all(torch.equal(merged[k], source[k]) for k in source)
    row = get_model(wh, "m58")
    assert row["kind"] == "merge" and row["parents"] == ["a", "b"]
    assert row["train_corpus"] == "generated:lua?docs=60=0.5+generated:stories?docs=200=0.5"
    edges = wh.query("SELECT parent, parent_order, relation, merge_method, merge_t FROM lineage WHERE child = 'm58' ORDER BY parent_order")
    assert edges.to_pylist() == [
        {"parent": "a", "parent_order": 0, "relation": "merge", "merge_method": "slerp", "merge_t": 0.58},
        {"parent": "b", "parent_order": 1, "relation": "merge", "merge_method": "slerp", "merge_t": 0.58},
    ]


def test_merge_refusals_leave_nothing_behind(two_finetunes, tmp_path):
    import json

    from featstore.models.catalog import register_model

    wh = two_finetunes
    # a model of another shape and one with another tokenizer
    wide = tmp_path / "wide"
    shutil.copytree(wh.root.parent / "a", wide)
    config = json.loads((wide / "config.json").read_text())
    (wide / "config.json").write_text(json.dumps({**config, "intermediate_size": 128}))
    register_model(wh, "wide", wide, kind="imported")
    from featstore.text.tokenizer import train_bpe

    other_tok = tmp_path / "other"
    shutil.copytree(wh.root.parent / "a", other_tok)
    train_bpe(["completely different words " * 20, "zzz yyy xxx www"] * 30, vocab_size=300, out_dir=other_tok)
    register_model(wh, "othertok", other_tok, kind="imported")
    shutil.copytree(wh.root.parent / "b", tmp_path / "gone")
    register_model(wh, "gone", tmp_path / "gone", kind="imported")
    shutil.rmtree(tmp_path / "gone")
    before = wh.query("SELECT name FROM models ORDER BY name").to_pylist()
    cases = [
        (["merge", "a", "nobody", "--name", "x"], "unknown model 'nobody'"),
        (["merge", "a", "b", "--name", "x", "--t", "1.2"], "between 0 and 1"),
        (["merge", "a", "b", "--name", "x", "--t", "-0.1"], "between 0 and 1"),
        (["merge", "a", "wide", "--name", "x"], "different architectures (intermediate_size)"),
        (["merge", "a", "othertok", "--name", "x"], "different tokenizers"),
        (["merge", "a", "gone", "--name", "x"], "has no folder"),
        (["merge", "a", "a", "--name", "x"], "with itself"),
        (["merge", "a", "b", "--name", "b"], "model 'b' already exists"),
        (["merge-sweep", "a", "b", "--steps", "1"], "at least 2"),
        (["merge-sweep", "a", "wide"], "different architectures"),
    ]
    for args, message in cases:
        result = run_cli(wh, *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert wh.query("SELECT name FROM models ORDER BY name").to_pylist() == before
    assert not (wh.root / "models").exists() or not any((wh.root / "models").iterdir())
    assert wh.scalar("SELECT count(*) FROM merge_sweep") == 0


def test_merge_sweep_rows_baseline_and_plot(two_finetunes):
    from featstore.models.merge import merge_sweep

    wh = two_finetunes
    result = merge_sweep(wh, "a", "b", steps=3, eval_tokens=1024, device="cpu")
    assert result["base"] == "base"
    rows = wh.query("SELECT * FROM merge_sweep ORDER BY evaluated, eval_set, t").to_pylist()
    assert len(rows) == 3 * 2 + 2
    assert {(r["evaluated"], r["t"]) for r in rows} == {("base", None), ("merge", 0.0), ("merge", 0.5), ("merge", 1.0)}
    assert all(r["n_tokens"] > 900 and r["loss"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert set(result["monotone"]) == {"a", "b"}
    assert wh.query("SELECT count(*) AS n FROM merge_sweep_monotone").to_pylist() == [{"n": 2}]
    plot = wh.root / "plots" / "merge_sweep-a-b-slerp.png"
    assert str(plot) == result["plot"] and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    merge_sweep(wh, "a", "b", steps=3, eval_tokens=1024, device="cpu")  # a rerun replaces, never appends
    assert wh.scalar("SELECT count(*) FROM merge_sweep") == len(rows)
