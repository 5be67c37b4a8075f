"""Plain helpers shared by the test areas (`import helpers`; tests/ is on pytest's pythonpath).

Fixtures live in conftest.py files (tests/conftest.py for the whole suite, tests/<area>/conftest.py for
one area); what is here is ordinary functions, classes and constants: the CLI runner, tiny texts, an
SAE folder writer, chat replies, catalog rows written straight into the tables, the synthetic report
warehouse, the correlation references and the engine comparisons.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# --- where things are: this file sits in tests/, whatever the depth of the test that imports it ---------

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent  # the checkout: cli.py, featstore/, sql/, experiments/
FIXTURES = TESTS / "fixtures"  # files kept for the tests (old code, recorded pipeline steps)
FAULT_RUNNER = TESTS / "fault_runner.py"  # `python FAULT_RUNNER TARGET ACTION WHEN N -- featstore args`

# --- the CLI ---------------------------------------------------------------------------------------


def invoke(*args: str, **kwargs):
    """`featstore ARGS` through click's test runner (in process); returns click's Result."""
    from click.testing import CliRunner

    from cli import main

    return CliRunner().invoke(main, list(args), **kwargs)


def run_cli(wh, *args: str, **kwargs):
    """`featstore --warehouse WH ARGS`; `wh` is a Warehouse or a folder (str or Path; a Path's own `.root`
    is "/", so it is never read). Returns click's Result: callers check `exit_code` themselves."""
    folder = wh if isinstance(wh, (str, os.PathLike)) else wh.root
    return invoke("--warehouse", str(folder), *args, **kwargs)


def error_line(result) -> str:
    """The one `error: …` line of a command's output (progress bars may share stderr)."""
    lines = re.findall(r"error: [^\r\n]*", result.output)
    assert len(lines) == 1, result.output
    return lines[0]


def refusal_line(result) -> str:
    """The one `error:` line of a command that refused its input: a library error's, neither an unexpected
    exception's (`error: unexpected TypeError: …`) nor a traceback."""
    line = error_line(result)
    assert not line.startswith("error: unexpected ") and "Traceback" not in result.output, result.output
    return line


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path: what a refused command must leave as it was."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def property_settings(max_examples: int):
    """Hypothesis settings for the CLI's property tests: few examples, the same ones every run (no flaky
    suite), no deadline (a command's first call imports its libraries) and no example database on disk."""
    from hypothesis import HealthCheck, settings

    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


# --- texts, SAE folders, chat replies --------------------------------------------------------------

WORDS = (
    "the cat sat on a mat and the dog ran to the park . def foo ( x ) : return x + 1 "
    "local function bar ( t ) for i = 1 , # t do print ( t [ i ] ) end end "
    "once upon a time there was a little girl who liked to play with her ball"
).split()


def tiny_texts(n_docs: int = 40, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n_docs)]


def write_sae_folder(folder, d_in: int = 64, d_sae: int = 16, hook_name: str = "blocks.0.mlp.hook_post",
                     architecture: str = "standard", shapes: dict | None = None):
    """An SAELens-style SAE folder (cfg.json + sae_weights.safetensors) written without torch."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    dims = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,), **(shapes or {})}
    save_file({k: rng.standard_normal(s).astype(np.float32) for k, s in dims.items()}, str(folder / "sae_weights.safetensors"))
    cfg = {"d_in": d_in, "d_sae": d_sae, "hook_name": hook_name, "hook_layer": 0, "architecture": architecture,
           "l1_coefficient": 0.01}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def chat_reply(content: str, top_logprobs: dict[str, float] | None = None, usage=(11, 1)) -> dict:
    """A chat-completions reply body; with top_logprobs, a logprobs block for its first token."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    if top_logprobs is not None:
        first = max(top_logprobs, key=top_logprobs.get)
        choice["logprobs"] = {"content": [{
            "token": first, "logprob": top_logprobs[first],
            "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top_logprobs.items()],
        }]}
    return {"id": "x", "object": "chat.completion", "choices": [choice],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}}


# --- warehouses written straight with SQL ----------------------------------------------------------


class FakeCatalog:
    """Catalog rows written straight into the tables, with no model files: for tests of the SQL layers."""

    def __init__(self, wh):
        self.wh = wh

    def model(self, name, parents=(), relation=None, tokenizer="tk", merge_t=None):
        kind = "base" if not parents else relation
        with self.wh.transaction() as con:
            con.execute("INSERT INTO models (name, kind, path, tokenizer) VALUES (?, ?, ?, ?)", [name, kind, f"/m/{name}", tokenizer])
            for order, parent in enumerate(parents):
                con.execute("INSERT INTO lineage VALUES (?, ?, ?, ?, ?, ?)",
                            [parent, name, relation, order, "slerp" if relation == "merge" else None, merge_t])

    def sae(self, sae_id, model, d_sae, primary=True):
        with self.wh.transaction() as con:
            con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, is_primary)"
                        " VALUES (?, ?, 'blocks.0.mlp.hook_post', 0, 8, ?, 'relu', ?)", [sae_id, model, d_sae, primary])

    def corpus(self, name, n_tokens, token_ids=None, tokenizer="tk"):
        with self.wh.transaction() as con:
            start = con.execute("SELECT coalesce(max(tok_start + n_tokens), 0) FROM corpora").fetchone()[0]
            con.execute("INSERT INTO corpora (name, source, tokenizer, n_documents, n_tokens, tok_start) VALUES (?, 'test', ?, 1, ?, ?)",
                        [name, tokenizer, n_tokens, start])
            if token_ids is not None:
                # the INSERT below reads the local `rows` by name (DuckDB's replacement scan)
                rows = pa.table({"tok": pa.array(range(start, start + len(token_ids)), pa.uint32()),  # noqa: F841
                                 "pos": range(len(token_ids)), "token_id": pa.array(token_ids, pa.int32())})
                con.execute("INSERT INTO tokens SELECT tok, ?, 0, pos, token_id FROM rows", [name])
        return start

    def activations(self, sae, corpus, tok, feature, act, n_tokens):
        table = pa.table({"tok": pa.array(tok, pa.uint32()), "feature": pa.array(feature, pa.uint32()),
                          "act": pa.array(act, pa.float32())})
        self.wh.write_partition(sae, corpus, [table], n_tokens=n_tokens, origin="import")


def copy_interp(warehouse, interp_template):
    """Fill an empty warehouse with a copy of the `interp_template` catalog and its partitions."""
    db_path, partitions, n_tokens = interp_template
    warehouse.root.mkdir(parents=True)
    shutil.copy(db_path, warehouse.db_path)
    for sae, table in partitions.items():
        warehouse.write_partition(sae, "synth", [table], n_tokens=n_tokens, origin="ingest")
    return warehouse


# A parent and its fine-tune on the generated corpora, with one small slice: the micro pipeline tests' lineage edge.
BASE_LUA_EDGE = """
[models.base]
corpus = "english=0.5+lua=0.5"

[models.lua]
parent = "base"
corpus = "lua"

[slices.eval-lua]
corpus = "lua"
tokens = 400
"""
REPORT_VOCAB = ["local", " x", " =", " 1", "\n", "end", " the", " cat", ".", "(", ")", " print"]
REPORT_MODELS = {"base": "base", "lua": "finetune", "tinystories": "finetune", "luastories": "merge"}
REPORT_EDGES = [("base", "lua"), ("base", "tinystories"), ("lua", "luastories"), ("tinystories", "luastories")]
REPORT_D_SAE, REPORT_N_TOKENS = 6, 60


def fill(wh):
    """The report's synthetic warehouse: four models (REPORT_MODELS), one SAE each, one corpus slice,
    correlations, scores, a merge sweep, step times."""
    vocab, d_sae, n_tokens = REPORT_VOCAB, REPORT_D_SAE, REPORT_N_TOKENS
    rng = random.Random(0)
    with wh.transaction() as con:
        con.execute("INSERT INTO tokenizers VALUES ('fp', 'tiny', ?, current_timestamp)", [len(vocab)])
        for i, text in enumerate(vocab):
            con.execute("INSERT INTO vocab VALUES ('fp', ?, ?, ?)", [i, text, text])
        con.execute("INSERT INTO corpora VALUES ('eval-lua', 'generated:lua', 'fp', 3, ?, 0, NULL, current_timestamp)", [n_tokens])
        con.execute("INSERT INTO tokens SELECT i, 'eval-lua', i // 20, i % 20, hash(i) % ? FROM range(?) r(i)",
                    [len(vocab), n_tokens])
        for name, kind in REPORT_MODELS.items():
            metrics = {"val_loss": {"lua": 2.0, "stories": 2.5}, "val_accuracy": {"lua": 0.4, "stories": 0.3}}
            con.execute("INSERT INTO models (name, kind, path, tokenizer, metrics) VALUES (?, ?, ?, 'fp', ?)",
                        [name, kind, f"/m/{name}", json.dumps(metrics)])
            con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, metrics)"
                        " VALUES (?, ?, 'blocks.0.mlp.hook_post', 0, 4, ?, 'relu', ?)",
                        [f"{name}-sae", name, d_sae, json.dumps({"fvu": 0.1, "l0": 2.0, "dead_fraction": 0.0})])
        for order, (parent, child) in enumerate(REPORT_EDGES):
            relation = "merge" if child == "luastories" else "finetune"
            con.execute("INSERT INTO lineage VALUES (?, ?, ?, ?, ?, ?)",
                        [parent, child, relation, order % 2 if relation == "merge" else 0,
                         "slerp" if relation == "merge" else None, 0.58 if relation == "merge" else None])
        for run_id, (parent, child) in enumerate(REPORT_EDGES, 1):
            con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                        " VALUES (?, ?, ?, 'eval-lua', 'all_tokens', 0.2, ?, ?)", [run_id, f"{parent}-sae", f"{child}-sae", n_tokens, d_sae])
            for feature in range(d_sae):
                # the first `run_id` features of the parent persist (r 0.9+), the rest do not
                r = 0.9 + 0.01 * feature if feature < run_id else 0.3
                con.execute("INSERT INTO correlations VALUES (?, ?, ?, ?)", [run_id, feature, feature, r])
                con.execute("INSERT INTO best_matches VALUES (?, 'a', ?, ?, ?)", [run_id, feature, feature, r])
                con.execute("INSERT INTO best_matches VALUES (?, 'b', ?, ?, ?)", [run_id, feature, feature, r])
        for score_id, (name, feature) in enumerate(((m, f) for m in REPORT_MODELS for f in range(d_sae)), 1):
            con.execute("INSERT INTO scores (id, sae, corpus, feature, kind, source_sae, source_feature, explainer,"
                        " explainer_version, simulator, simulator_version, score, n_samples)"
                        " VALUES (?, ?, 'eval-lua', ?, 'self', ?, ?, 'builtin', 'v1', 'builtin', 'v1', ?, 20)",
                        [score_id, f"{name}-sae", feature, f"{name}-sae", feature, rng.uniform(-0.2, 0.9)])
        for t in (0.0, 0.5, 1.0):
            for eval_set, acc in (("lua", 0.5 - 0.2 * t), ("tinystories", 0.3 + 0.2 * t)):
                con.execute("INSERT INTO merge_sweep (model_a, model_b, method, t, evaluated, eval_set, corpus, n_tokens,"
                            " loss, accuracy) VALUES ('lua', 'tinystories', 'slerp', ?, 'merge', ?, 'spec', 100, 2.0, ?)",
                            [t, eval_set, acc])
        for eval_set in ("lua", "tinystories"):
            con.execute("INSERT INTO merge_sweep (model_a, model_b, method, t, evaluated, eval_set, corpus, n_tokens,"
                        " loss, accuracy) VALUES ('lua', 'tinystories', 'slerp', NULL, 'base', ?, 'spec', 100, 3.0, 0.2)", [eval_set])
        con.execute("INSERT INTO pipeline_steps (step, input_hash, status, seconds, started_at)"
                    " VALUES ('train-base', 'h', 'done', 12.5, current_timestamp)")
        # the report step is `running` while it writes the page
        con.execute("INSERT INTO pipeline_steps (step, input_hash, status, started_at)"
                    " VALUES ('report', 'h', 'running', current_timestamp)")
        con.execute("INSERT INTO explanations VALUES ('base-sae', 'eval-lua', 0, 'builtin', 'v1',"
                    " 'This feature looks mainly for \"local\".', 20, 0, 0, current_timestamp)")
        # base's seed replica: 4 of 6 features persist (the floor); decoder cosine matches base -> lua's first 3
        con.execute("INSERT INTO saes (id, model, hook_point, layer, d_in, d_sae, architecture, is_primary, seed, seed_of)"
                    " VALUES ('base-sae-seed1', 'base', 'blocks.0.mlp.hook_post', 0, 4, ?, 'relu', false, 1, 'base-sae')", [d_sae])
        con.execute("INSERT INTO correlation_runs (id, sae_a, sae_b, corpus, stat, r_floor, n_tokens, n_pairs)"
                    " VALUES (9, 'base-sae', 'base-sae-seed1', 'eval-lua', 'all_tokens', 0.2, ?, ?)", [n_tokens, d_sae])
        con.execute("INSERT INTO match_runs (id, sae_a, sae_b, corpus, method, top_k, floor, n_pairs)"
                    " VALUES (1, 'base-sae', 'lua-sae', NULL, 'decoder_cosine', 5, 0.5, ?)", [d_sae])
        for feature in range(d_sae):
            for side in "ab":
                con.execute("INSERT INTO best_matches VALUES (9, ?, ?, ?, ?)", [side, feature, feature, 0.95 if feature < 4 else 0.3])
            con.execute("INSERT INTO match_pairs VALUES (1, ?, ?, ?)", [feature, feature, 0.9 if feature < 3 else 0.2])
    for name in REPORT_MODELS:
        toks = np.arange(n_tokens, dtype=np.uint32)
        feature = (toks % d_sae).astype(np.uint32)
        act = np.linspace(0.1, 3.0, n_tokens, dtype=np.float32)
        wh.write_partition(f"{name}-sae", "eval-lua", [pa.table({"tok": toks, "feature": feature, "act": act})],
                           n_tokens=n_tokens, origin="import")


# --- correlation: dense references on random sparse data, and engine comparisons --------------------

# The random sparse data of tests/correlation/conftest.py (`data`, `filled`): tokens, both SAEs' widths, vocabulary.
N_TOKENS, D_A, D_B, VOCAB = 240, 18, 22, 12


def all_tokens_reference(a, b):
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.corrcoef(a.T.astype(np.float64), b.T.astype(np.float64))[: a.shape[1], a.shape[1]:]


def cofiring_reference(a, b, min_n=None):
    """Pearson r over the tokens where both fire, defined from `min_n` such tokens (default: the library's MIN_COFIRING)."""
    from featstore.correlation.correlate import MIN_COFIRING

    min_n = MIN_COFIRING if min_n is None else min_n
    ref = np.full((a.shape[1], b.shape[1]), np.nan)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            both = (a[:, i] > 0) & (b[:, j] > 0)
            x, y = a[both, i].astype(np.float64), b[both, j].astype(np.float64)
            if both.sum() >= min_n and x.std() > 0 and y.std() > 0:
                ref[i, j] = np.corrcoef(x, y)[0, 1]
    return ref


def token_type_mean_reference(a, b, token_ids):
    """The paper's way: pivot to mean activation per (token type, feature), then DataFrame.corr()."""
    import pandas as pd

    def pivot(dense, prefix):
        tok, feature = np.nonzero(dense)
        frame = pd.DataFrame({"token_id": token_ids[tok], "feature": [f"{prefix}{f}" for f in feature], "act": dense[tok, feature]})
        return frame.pivot_table(index="token_id", columns="feature", values="act", aggfunc="mean")

    table = pd.concat([pivot(a, "a"), pivot(b, "b")], axis=1).corr()
    ref = np.full((a.shape[1], b.shape[1]), np.nan)
    for i in range(a.shape[1]):
        for j in range(b.shape[1]):
            if f"a{i}" in table.index and f"b{j}" in table.columns:
                ref[i, j] = table.loc[f"a{i}", f"b{j}"]
    return ref


def reference(stat, data):
    a, b, token_ids = data
    if stat == "all_tokens":
        return all_tokens_reference(a, b)
    if stat == "cofiring":
        return cofiring_reference(a, b)
    return token_type_mean_reference(a, b, token_ids)


def stored(wh, run_id):
    """A correlation run's stored pairs {(feature_a, feature_b): r} and best matches {(side, feature): (match, r)}."""
    pairs = {(r["feature_a"], r["feature_b"]): r["r"] for r in
             wh.query("SELECT * FROM correlations WHERE run_id = ?", [run_id]).to_pylist()}
    best = {(r["side"], r["feature"]): (r["match"], r["r"]) for r in
            wh.query("SELECT * FROM best_matches WHERE run_id = ?", [run_id]).to_pylist()}
    return pairs, best


def check_against(ref, pairs, best, floor):
    expected = {(i, j) for i, j in zip(*np.nonzero(np.nan_to_num(ref, nan=-2) >= floor))}
    borderline = {(i, j) for i, j in zip(*np.nonzero(np.abs(np.nan_to_num(ref, nan=-2) - floor) < 1e-5))}
    assert set(pairs) ^ expected <= borderline
    for (i, j), r in pairs.items():
        assert r == pytest.approx(ref[i, j], abs=1e-5)
    for side, matrix in (("a", ref), ("b", ref.T)):
        assert len([k for k in best if k[0] == side]) == matrix.shape[0]  # every feature has a row
        for f, row in enumerate(matrix):
            match, r = best[(side, f)]
            if np.all(np.isnan(row)):
                assert match is None and r is None
            else:
                assert r == pytest.approx(np.nanmax(row), abs=1e-5)
                assert row[match] == pytest.approx(np.nanmax(row), abs=1e-5)


def same_results(sql, other, floor, tol=1e-5):
    """Same pairs (up to the ones within tol of the floor), r to tol, identical best matches.

    Returns the number of best matches that differ only by an exact tie (two partners of equal r, e.g.
    1.0 for token_type_mean on few types), where the SQL engine's arg_max may pick either."""
    (pairs_sql, best_sql), (pairs_other, best_other) = sql, other
    borderline = {k for k, r in {**pairs_sql, **pairs_other}.items() if abs(r - floor) < tol}
    assert set(pairs_sql) ^ set(pairs_other) <= borderline
    for key in set(pairs_sql) & set(pairs_other):
        assert pairs_other[key] == pytest.approx(pairs_sql[key], abs=tol)
    assert best_sql.keys() == best_other.keys()
    ties = 0
    for (side, feature), (match, r) in best_sql.items():
        other_match, other_r = best_other[(side, feature)]
        assert (other_r is None) == (r is None)
        if r is None:
            continue
        assert other_r == pytest.approx(r, abs=tol)
        if other_match != match:
            pair = (feature, other_match) if side == "a" else (other_match, feature)
            assert pairs_sql[pair] == pytest.approx(r, abs=1e-7), (side, feature)
            ties += 1
    return ties


def split_into_parts(wh, sae: str, corpus: str, count: int, scratch: Path) -> list:
    """Republish (sae, corpus) as `count` sorted parts, token t in part t % count, as shards would write them."""
    from featstore.warehouse.storage import sort_partition

    table = pq.read_table(wh.partition_files(sae, corpus))
    parts = []
    for i in range(count):
        part = scratch / f"{sae}-{i}.parquet"
        pq.write_table(table.filter(pa.array(table["tok"].to_numpy() % count == i)), part)
        sort_partition(part)
        parts.append(part)
    n_tokens = wh.scalar("SELECT n_tokens FROM activation_partitions WHERE sae = ? AND corpus = ?", [sae, corpus])
    wh.publish_parts(sae, corpus, parts, n_tokens, origin="ingest")
    return wh.partition_files(sae, corpus)


def build_lineage(wh, model_dir, tokenizer_dir, folder) -> None:
    """Model 'm' and its fine-tune 'child' (the same tiny weights), SAE 'm-sae' of m and 'child-sae' of child
    (different random weights, so some features match and some do not), corpus 'c' of 12 tiny documents."""
    import torch

    from featstore.models.catalog import register_model
    from featstore.saes import build_sae, save_sae
    from featstore.saes.catalog import register_sae
    from featstore.text.slices import add_corpus

    register_model(wh, "m", model_dir, kind="base")
    register_model(wh, "child", model_dir, kind="finetune", parents=("m",))
    for seed, (sae_id, model) in enumerate((("m-sae", "m"), ("child-sae", "child"))):
        torch.manual_seed(seed)
        sae = build_sae("relu", d_in=64, d_sae=48, model_name=model)
        with torch.no_grad():
            sae.b_enc += 0.5  # about half the features fire
        saved = save_sae(sae, folder / sae_id)
        register_sae(wh, sae_id, model, saved, hook_point="blocks.0.mlp.hook_post", layer=0, d_in=64, d_sae=48,
                     architecture="relu")
    source = folder / "eval.txt"
    source.write_text("\n\n".join(tiny_texts(12, seed=5)))
    add_corpus(wh, "c", str(source), tokenizer_dir)
