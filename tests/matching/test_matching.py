"""Matching methods and policies: blocked cosine against dense, the sparse Hungarian against scipy's
dense one, and a planted lineage where the truth is known in weight space and in activation space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import run_cli

from featstore.correlation.correlate import correlate
from featstore.errors import FeatstoreError
from featstore.matching import build_evidence
from featstore.matching.cosine import cosine_candidates
from featstore.matching.policies import one_to_one

# -- cosine: blocked and exact ----------------------------------------------------------------------


def dense_candidates(a, b, top_k, floor):
    a, b = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (a, b))
    s = a @ b.T
    pairs = {(i, j) for i, j in zip(*np.nonzero(s >= floor))}
    pairs |= {(i, j) for i in range(len(a)) for j in np.argsort(-s[i])[:top_k]}
    pairs |= {(i, j) for j in range(len(b)) for i in np.argsort(-s[:, j])[:top_k]}
    return pairs, s


@pytest.mark.parametrize("block_elements", [1000, 1 << 24])
def test_blocked_cosine_keeps_exactly_the_dense_candidates(block_elements):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 16)), rng.standard_normal((170, 16))
    b[:40] = a[:40] + 0.05 * rng.standard_normal((40, 16))  # some near-copies above the floor
    ia, ib, score = cosine_candidates(torch.tensor(a), torch.tensor(b), top_k=3, floor=0.6, device="cpu",
                                      block_elements=block_elements)
    expected, dense = dense_candidates(a, b, 3, 0.6)
    assert set(zip(ia.tolist(), ib.tolist())) == expected
    assert len(ia) == len(expected)  # each pair once
    np.testing.assert_allclose(score, dense[ia, ib], atol=1e-5)


def test_cosine_refuses_vectors_of_different_widths():
    with pytest.raises(FeatstoreError, match="one width"):
        cosine_candidates(torch.ones(4, 8), torch.ones(4, 16), device="cpu")


# -- one-to-one: the sparse Hungarian equals the dense one --------------------------------------------


def test_one_to_one_equals_linear_sum_assignment_and_leaves_the_rest_unmatched():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(1)
    n_a, n_b = 40, 30
    dense = np.where(rng.random((n_a, n_b)) < 0.08, rng.random((n_a, n_b)), 0.0)
    fa, fb = np.nonzero(dense)
    pa_, pb, ps = one_to_one(fa, fb, dense[fa, fb])
    rows, cols = linear_sum_assignment(dense, maximize=True)
    assert ps.sum() == pytest.approx(dense[rows, cols].sum(), rel=1e-6)
    assert len(set(pa_.tolist())) == len(pa_) and len(set(pb.tolist())) == len(pb)  # one-to-one
    assert all(dense[x, y] > 0 for x, y in zip(pa_, pb))                            # candidates only
    np.testing.assert_allclose(ps, dense[pa_, pb], rtol=1e-6)
    assert len(pa_) < n_b  # a sparse graph leaves features unmatched instead of pairing them at 0


def test_one_to_one_breaks_many_to_one():
    # two a features both prefer b 0; one-to-one gives b 0 to the stronger and b 1 to the other
    fa, fb, score = np.array([0, 1, 1]), np.array([0, 0, 1]), np.array([0.9, 0.8, 0.5])
    got = sorted(zip(*(x.tolist() for x in one_to_one(fa, fb, score)[:2])))
    assert got == [(0, 0), (1, 1)]


# -- a planted lineage: truth known in weight space and in activation space ---------------------------

D_IN, F, N_TOKENS = 128, 60, 4000
ROTATION = np.deg2rad(30)  # cosine 0.866: above the cosine threshold 0.7
# child features by kind: 0-19 copy a parent feature, 20-39 are one rotated by 30 degrees, 40-47 read
# a parent feature's direction (same activations) but write an unrelated one, 48-55 write a parent
# feature's direction but read an unrelated one (other activations), 56-59 are unrelated
COPY, ROTATED, SAME_ENCODER, SAME_DECODER = range(0, 20), range(20, 40), range(40, 48), range(48, 56)
N_REPLICA_COPIES = 50  # the parent's seed replica copies 50 of its 60 features, 10 are unrelated


def unit_rows(rng, n):
    x = rng.standard_normal((n, D_IN))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def rotated(rng, rows):
    """Each row turned by ROTATION toward a random direction orthogonal to it."""
    other = rng.standard_normal(rows.shape)
    other -= (other * rows).sum(1, keepdims=True) * rows
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    return np.cos(ROTATION) * rows + np.sin(ROTATION) * other


def save_weights(folder, encoder_rows, decoder_rows):
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    weights = {"W_dec": decoder_rows, "W_enc": encoder_rows.T.copy(), "b_enc": np.full(F, -1.0), "b_dec": np.zeros(D_IN)}
    save_file({k: v.astype(np.float32) for k, v in weights.items()}, str(folder / "sae_weights.safetensors"))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Parent SAE P, child SAE C (lineage edge p -> c) and P's seed replica R, with known matches.

    Activations: sparse codes on every direction an SAE reads, summed into x, encoded by each SAE
    (ReLU(x . encoder row - 1)). Returns the warehouse and the true (parent, child) pairs in
    activation space (what the encoders read) and in decoder space, and the replica's true pairs.
    """
    import pyarrow as pa

    from featstore.warehouse import Warehouse

    rng = np.random.default_rng(7)
    parent = unit_rows(rng, F)
    perm, perm2 = rng.permutation(F), rng.permutation(F)
    shared = np.concatenate([parent[perm[:20]], rotated(rng, parent[perm[20:40]])])
    child_enc = np.concatenate([shared, parent[perm[40:48]], unit_rows(rng, 12)])
    child_dec = np.concatenate([shared, unit_rows(rng, 8), parent[perm[48:56]], child_enc[56:]])
    replica = np.concatenate([parent[perm2[:N_REPLICA_COPIES]], unit_rows(rng, F - N_REPLICA_COPIES)])
    concepts = np.concatenate([parent, child_enc[48:], replica[N_REPLICA_COPIES:]])
    codes = np.where(rng.random((N_TOKENS, len(concepts))) < 0.02, rng.uniform(2, 4, (N_TOKENS, len(concepts))), 0.0)
    x = codes @ concepts

    wh = Warehouse(tmp_path_factory.mktemp("planted") / "wh")
    with wh.transaction() as con:
        con.execute("INSERT INTO tokenizers VALUES ('tk', 'planted', 50, DEFAULT)")
        con.execute("INSERT INTO vocab SELECT 'tk', i, 'w' || i, 'w' || i FROM range(50) t(i)")
        con.execute("INSERT INTO models (name, kind, path, tokenizer) VALUES ('p', 'base', '/m/p', 'tk'), ('c', 'finetune', '/m/c', 'tk')")
        con.execute("INSERT INTO lineage (parent, child, relation, parent_order) VALUES ('p', 'c', 'finetune', 0)")
        con.execute("INSERT INTO corpora (name, source, tokenizer, n_documents, n_tokens, tok_start) VALUES ('eval', 'test', 'tk', 1, ?, 0)", [N_TOKENS])
        con.register("token_rows", pa.table({"tok": pa.array(range(N_TOKENS), pa.uint32()),
                                             "token_id": pa.array(rng.integers(0, 50, N_TOKENS), pa.int32())}))
        con.execute("INSERT INTO tokens SELECT tok, 'eval', 0, tok, token_id FROM token_rows")
    for sae, model, enc, dec, seed_of in (("P", "p", parent, parent, None), ("C", "c", child_enc, child_dec, None),
                                          ("R", "p", replica, replica, "P")):
        save_weights(wh.root / "saes" / sae, enc, dec)
        with wh.transaction() as con:
            con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, path, is_primary, seed, seed_of)"
                        " VALUES (?, ?, 'blocks.0.mlp.hook_post', 0, ?, ?, 'relu', ?, ?, ?, ?)",
                        [sae, model, D_IN, F, str(wh.root / "saes" / sae), seed_of is None, 1 if seed_of else 0, seed_of])
        acts = np.maximum(x @ enc.T - 1.0, 0.0)
        tok, feature = np.nonzero(acts)
        table = pa.table({"tok": pa.array(tok, pa.uint32()), "feature": pa.array(feature, pa.uint32()),
                          "act": pa.array(acts[tok, feature], pa.float32())})
        wh.write_partition(sae, "eval", [table], n_tokens=N_TOKENS, origin="import")
    for other in ("C", "R"):
        for stat in ("all_tokens", "cofiring", "token_type_mean"):
            correlate(wh, "P", other, corpus="eval", stat=stat, progress=False)
        build_evidence(wh, "P", other, ["eval"], device="cpu")
    pairs = lambda kinds: {(int(perm[i]), i) for kind in kinds for i in kind}  # noqa: E731
    truth = {"activations": pairs((COPY, ROTATED, SAME_ENCODER)), "decoder": pairs((COPY, ROTATED, SAME_DECODER))}
    return wh, truth, {(int(perm2[i]), i) for i in range(N_REPLICA_COPIES)}


def predicted(wh, method, policy, threshold):
    rows = wh.query("SELECT feature, match FROM persistence(threshold := ?, method := ?, policy := ?)"
                    " WHERE side = 'parent' AND status = 'persists'", [threshold, method, policy]).to_pylist()
    return {(r["feature"], r["match"]) for r in rows}


def precision_recall(found, truth):
    hits = len(found & truth)
    return hits / max(1, len(found)), hits / len(truth)


# (method, its default threshold, the space whose truth it should find) -> (precision, recall) per policy
EXPECTED = {
    ("all_tokens", 0.8, "activations"): {"best": (1.0, 1.0), "mutual": (1.0, 1.0), "one_to_one": (1.0, 1.0)},
    ("jaccard", 0.5, "activations"): {"best": (1.0, 1.0), "mutual": (1.0, 1.0), "one_to_one": (1.0, 1.0)},
    ("encoder_cosine", 0.7, "activations"): {"best": (1.0, 1.0), "mutual": (1.0, 1.0), "one_to_one": (1.0, 1.0)},
    ("decoder_cosine", 0.7, "decoder"): {"best": (1.0, 1.0), "mutual": (1.0, 1.0), "one_to_one": (1.0, 1.0)},
}


@pytest.mark.parametrize("method, threshold, space", list(EXPECTED))
def test_each_method_finds_the_matches_planted_in_its_space(planted, method, threshold, space):
    wh, truth, _ = planted
    for policy, expected in EXPECTED[(method, threshold, space)].items():
        got = precision_recall(predicted(wh, method, policy, threshold), truth[space])
        assert got == pytest.approx(expected), (method, policy)
    other = "decoder" if space == "activations" else "activations"
    _, recall_elsewhere = precision_recall(predicted(wh, method, "best", threshold), truth[other])
    assert recall_elsewhere == pytest.approx(40 / 48)  # the 8 features planted in the other space only are missed


def test_the_noisier_statistics_are_measured_too(planted):
    wh, truth, _ = planted
    # r over co-firing tokens alone: without a minimum, a pair co-firing on a few tokens scores r near 1;
    # the default minimum of 10 shared tokens removes those; per-token-type means lose some true matches
    cofiring = precision_recall(predicted(wh, "cofiring", "best", 0.8), truth["activations"])
    assert cofiring[0] > 0.9
    assert precision_recall(predicted(wh, "cofiring", "mutual", 0.8), truth["activations"])[0] >= cofiring[0]
    precision, recall = precision_recall(predicted(wh, "token_type_mean", "best", 0.8), truth["activations"])
    assert precision == 1.0 and 0.8 < recall < 0.9


def test_seed_floor_and_the_share_relative_to_it(planted):
    wh, truth, replica_truth = planted
    floor = wh.query("SELECT * FROM seed_floor WHERE threshold = 0.8").to_pylist()
    assert [(r["model"], r["primary_sae"], r["replica_sae"]) for r in floor] == [("p", "P", "R")]
    assert floor[0]["primary_share_persisting"] == pytest.approx(50 / 60)
    assert floor[0]["replica_share_persisting"] == pytest.approx(50 / 60)
    seeds = wh.query("SELECT feature, match FROM method_matches(policy := 'one_to_one') WHERE relation = 'seed'"
                     " AND side = 'parent' AND method = 'decoder_cosine' AND r >= 0.7").to_pylist()
    assert {(r["feature"], r["match"]) for r in seeds} == replica_truth
    for method, threshold in (("all_tokens", 0.8), ("decoder_cosine", 0.7)):
        [row] = wh.query("SELECT * FROM persistence_summary(threshold := ?, method := ?)", [threshold, method]).to_pylist()
        assert row["parent_share_persisting"] == pytest.approx(48 / 60)
        assert row["parent_floor"] == pytest.approx(50 / 60) and row["child_floor"] is None  # the child has no replica
        assert row["parent_share_vs_floor"] == pytest.approx(0.96)
    [run] = wh.query("SELECT * FROM run_persistence").to_pylist()
    assert (run["share_persisting"], run["parent_floor"], run["share_vs_floor"]) == (0.8, 0.8333, 0.96)
    # persistence itself never shows the seed pair: it is not a lineage edge
    assert wh.scalar("SELECT count(*) FROM persistence WHERE relation = 'seed'") == 0


def test_agreement_and_disagreements_between_methods(planted):
    wh, _, _ = planted
    [row] = wh.query("SELECT * FROM edge_agreement WHERE relation = 'finetune'"
                     " AND method_a = 'all_tokens' AND method_b = 'decoder_cosine'").to_pylist()
    assert (row["live_features"], row["persisting_a"], row["persisting_b"], row["persisting_both"], row["same_match"]) == (60, 48, 48, 40, 40)
    assert row["agreement"] == pytest.approx(40 / 56)
    rows = wh.query("SELECT * FROM edge_disagreements WHERE relation = 'finetune'"
                    " AND method_a = 'all_tokens' AND method_b = 'decoder_cosine' ORDER BY rank").to_pylist()
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    # the widest gaps: features whose decoder row the child copied while reading another direction
    assert all(r["match_b"] in SAME_DECODER and r["score_b"] == pytest.approx(1.0) and r["score_a"] < 0.2 for r in rows)
    assert all(len(r["top_tokens"].split(" | ")) == 3 for r in rows)


def test_unknown_method_or_policy_and_mismatched_widths_are_refused(planted, tmp_path):
    wh, _, _ = planted
    with pytest.raises(FeatstoreError, match="unknown match method 'nope'"):
        wh.query("SELECT * FROM persistence(method := 'nope')")
    with pytest.raises(FeatstoreError, match="unknown match policy 'greedy'"):
        wh.query("SELECT * FROM persistence(policy := 'greedy')")
    with pytest.raises(FeatstoreError, match="correlation statistics come from `featstore correlate`"):
        build_evidence(wh, "P", "C", methods=["all_tokens"])
    with pytest.raises(FeatstoreError, match="with itself"):
        build_evidence(wh, "P", "P")
    before = wh.scalar("SELECT count(*) FROM match_runs")
    with wh.transaction() as con:
        con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, is_primary)"
                    " VALUES ('wide', 'c', 'blocks.0.hook_resid_post', 0, 256, 60, 'relu', false)")
    try:
        with pytest.raises(FeatstoreError, match="different widths"):
            build_evidence(wh, "P", "wide", methods=["decoder_cosine"])
    finally:
        with wh.transaction() as con:
            con.execute("DELETE FROM saes WHERE id = 'wide'")
    assert wh.scalar("SELECT count(*) FROM match_runs") == before


def test_one_to_one_persistence_in_the_plain_duckdb_shell(planted, duckdb_shell, tmp_path):
    import subprocess

    wh, _, _ = planted
    sql = ("SELECT count(*) AS n FROM persistence(method := 'decoder_cosine', policy := 'one_to_one', threshold := 0.7)"
           " WHERE side = 'parent' AND status = 'persists'")
    done = subprocess.run([duckdb_shell, "-readonly", "-csv", str(wh.db_path), "-c", sql], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr, done.stderr
    assert done.stdout.split() == ["n", "48"]


def test_dropping_an_sae_drops_its_match_evidence(planted, tmp_path):
    import shutil

    pass
    from featstore.warehouse import Warehouse

    wh, _, _ = planted
    copy = Warehouse(tmp_path / "wh")
    shutil.copytree(wh.root, copy.root)
    with copy.transaction() as con:
        copy.saes.drop("R", con)
    assert copy.scalar("SELECT count(*) FROM match_runs WHERE 'R' IN (sae_a, sae_b)") == 0
    assert copy.scalar("SELECT count(*) FROM match_assignments WHERE 'R' IN (sae_a, sae_b)") == 0
    assert copy.scalar("SELECT count(*) FROM match_pairs WHERE run_id NOT IN (SELECT id FROM match_runs)") == 0
    assert copy.scalar("SELECT count(*) FROM match_runs WHERE sae_b = 'C'") == 3  # the other pair's evidence stays


def test_cli_match_and_persistence_with_method_and_policy(planted, tmp_path):
    import shutil

    wh, _, _ = planted
    shutil.copytree(wh.root, tmp_path / "wh")
    result = run_cli(tmp_path / "wh", "match", "P", "C", "--method", "decoder_cosine", "--top-k", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "decoder_cosine (weights): pairs" in result.output and "one_to_one" in result.output
    result = run_cli(tmp_path / "wh", "persistence", "--method", "decoder_cosine", "--policy", "one_to_one",
                     "--threshold", "0.7")
    assert result.exit_code == 0, result.output
    assert "parent 48 persist / 12 disappear (80.0%)" in result.output and "seed floor 83.3% / n/a" in result.output
    result = run_cli(tmp_path / "wh", "match", "P", "C", "--method", "all_tokens")
    assert result.exit_code == 1 and "correlation statistics come from `featstore correlate`" in result.output


def test_the_method_registry_and_the_match_methods_table_name_the_same_methods(planted):
    from featstore.correlation.statistics import STATISTICS
    from featstore.matching import METHODS

    wh, _, _ = planted
    rows = wh.query("SELECT name, source FROM match_methods").to_pylist()
    assert {r["name"]: r["source"] for r in rows} == {name: m.source for name, m in METHODS.items()}
    assert set(STATISTICS) <= set(METHODS)
