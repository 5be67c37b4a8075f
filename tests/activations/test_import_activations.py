"""import-activations: both column layouts land on the right tok, zeros dropped, reruns replace, streamed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from helpers import run_cli

from featstore.activations.importer import import_activations
from featstore.text.slices import get_corpus


def random_activations(corpus: dict, d_sae: int = 16, n: int = 200, seed: int = 0) -> pa.Table:
    """Distinct (tok, feature) pairs of the corpus with a mix of positive, zero and negative acts."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(corpus["n_tokens"] * d_sae, size=n, replace=False)
    act = rng.uniform(-0.5, 2.0, size=n)
    act[:10] = 0.0
    return pa.table({
        "tok": pa.array(corpus["tok_start"] + keys // d_sae, pa.int64()),
        "feature": pa.array(keys % d_sae, pa.int32()),
        "act": pa.array(act, pa.float64()),
    })


def stored(wh, sae="base-sae", corpus="evalset") -> list[tuple]:
    rows = wh.query("SELECT tok, feature, act FROM activations WHERE sae = ? AND corpus = ? ORDER BY tok, feature",
                    [sae, corpus])
    return list(zip(*(rows.column(c).to_pylist() for c in ("tok", "feature", "act"))))


def expected(table: pa.Table) -> list[tuple]:
    rows = [(t, f, a) for t, f, a in zip(*(table.column(c).to_pylist() for c in ("tok", "feature", "act"))) if a > 0]
    return sorted((t, f, float(np.float32(a))) for t, f, a in rows)


def test_tok_layout_keeps_positive_rows_and_rerun_replaces(registered_warehouse, tmp_path):
    wh = registered_warehouse
    corpus = get_corpus(wh, "evalset")
    table = random_activations(corpus)
    path = tmp_path / "acts.parquet"
    pq.write_table(table, path)
    done = import_activations(wh, "base-sae", "evalset", path, batch_rows=16)  # many small batches: streamed
    n_positive = sum(a > 0 for a in table.column("act").to_pylist())
    assert done["rows_read"] == 200 and done["rows_written"] == n_positive
    assert done["rows_dropped_nonpositive"] == 200 - n_positive
    assert stored(wh) == expected(table)
    written = pq.read_table(wh.partition_files("base-sae", "evalset"))  # the input was in random order
    assert written.sort_by([("feature", "ascending"), ("tok", "ascending")]).equals(written)  # featstore.warehouse.storage's layout
    partition = wh.query("SELECT n_rows, n_tokens, origin FROM activation_partitions").to_pylist()
    assert partition == [{"n_rows": n_positive, "n_tokens": corpus["n_tokens"], "origin": "import"}]

    smaller = random_activations(corpus, n=50, seed=1)
    pq.write_table(smaller, path)
    import_activations(wh, "base-sae", "evalset", path)
    assert stored(wh) == expected(smaller)
    assert len(list(wh.partition_dir("base-sae", "evalset").iterdir())) == 1


def test_doc_pos_layout_maps_through_the_corpus_tokens(registered_warehouse, tmp_path, tiny_tokenizer_dir):
    wh = registered_warehouse
    from featstore.text.slices import add_corpus

    # A second corpus so its toks do not start at 0, which a wrong mapping would get away with.
    second = tmp_path / "second.txt"
    second.write_text("the cat sat on a mat\n\nlocal function bar ( t ) end\n\nonce upon a time")
    corpus = add_corpus(wh, "second", str(second), tiny_tokenizer_dir)
    tokens = wh.query("SELECT tok, doc_id, pos FROM tokens WHERE corpus = 'second' ORDER BY tok")
    assert corpus["tok_start"] > 0
    pick = [0, 3, len(tokens) - 1, 7]
    file = tmp_path / "docpos.parquet"
    pq.write_table(pa.table({
        "doc_id": pa.array([tokens.column("doc_id")[i].as_py() for i in pick], pa.int16()),
        "pos": pa.array([tokens.column("pos")[i].as_py() for i in pick], pa.uint16()),
        "feature": pa.array([1, 2, 15, 4], pa.uint8()),
        "act": pa.array([0.5, 1.5, 2.5, -1.0], pa.float16()),
    }), file)
    import_activations(wh, "base-sae", "second", file)
    toks = [tokens.column("tok")[i].as_py() for i in pick]
    assert stored(wh, corpus="second") == sorted([(toks[0], 1, 0.5), (toks[1], 2, 1.5), (toks[2], 15, 2.5)])


def test_feature_stats_view_summarises_the_partition(registered_warehouse, tmp_path):
    wh = registered_warehouse
    corpus = get_corpus(wh, "evalset")
    table = random_activations(corpus, n=300, seed=4)
    path = tmp_path / "acts.parquet"
    pq.write_table(table, path)
    import_activations(wh, "base-sae", "evalset", path)
    stats = wh.query("SELECT * FROM feature_stats WHERE sae = 'base-sae' AND corpus = 'evalset' ORDER BY feature")
    assert stats.column("feature").to_pylist() == list(range(16))  # every feature, fired or not
    rows = expected(table)
    for stat in stats.to_pylist():
        acts = [a for _, f, a in rows if f == stat["feature"]]
        assert stat["n_firing"] == len(acts)
        assert np.isclose(stat["density"], len(acts) / corpus["n_tokens"])
        if acts:
            assert np.isclose(stat["mean_act"], np.mean(acts), rtol=1e-6) and np.isclose(stat["max_act"], max(acts))
        else:
            assert stat["mean_act"] is None and stat["max_act"] is None


def test_cli_import_activations(registered_warehouse, tmp_path):
    path = tmp_path / "acts.parquet"
    pq.write_table(random_activations(get_corpus(registered_warehouse, "evalset"), n=20), path)
    result = run_cli(registered_warehouse, "import-activations", "--sae", "base-sae", "--corpus", "evalset", str(path))
    assert result.exit_code == 0, result.output
    assert "rows with act <= 0 dropped" in result.output
    assert len(stored(registered_warehouse)) > 0
