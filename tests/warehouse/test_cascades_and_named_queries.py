"""featstore.warehouse.tables: each entity's cascade, in one transaction, files last; named queries; the statistics registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from featstore.correlation.statistics import (
    STATISTICS,
    Statistic,
    get_statistic,
    register,
    statistic_names,
)
from featstore.errors import FeatstoreError
from featstore.interpret.scoring import score, transfer
from featstore.warehouse.queries import run, sql


def count(wh, table: str, where: str = "true", params: list | None = None) -> int:
    return wh.scalar(f"SELECT count(*) FROM {table} WHERE {where}", params or [])


@pytest.fixture
def explained(interp_warehouse):
    """interp_warehouse with toy's features explained and scored, and transfer scores of toy -> toy_child."""
    wh = interp_warehouse
    score(wh, "toy", top=5, progress=False)
    transfer(wh, "toy", "toy_child", progress=False)
    return wh


def partition_file(wh, sae: str) -> Path:
    return wh.root / wh.scalar("SELECT path FROM activation_partitions WHERE sae = ?", [sae])  # stored relative


def test_dropping_an_sae_removes_everything_computed_from_it_and_then_its_files(explained):
    wh, db = explained, explained
    file, kept = partition_file(wh, "toy"), partition_file(wh, "toy_child")
    for table, where in (("explanation_samples", "sae = 'toy'"), ("explanations", "sae = 'toy'"),
                         ("scores", "sae = 'toy'"), ("scores", "source_sae = 'toy' AND sae = 'toy_child'"),
                         ("correlation_runs", "sae_a = 'toy'"), ("best_matches", "run_id = 1")):
        assert count(wh, table, where) > 0, (table, where)
    child_self_scores = count(wh, "scores", "sae = 'toy_child' AND kind = 'self'")
    assert child_self_scores > 0

    assert db.saes.drop("toy") == [file]

    assert not file.exists() and kept.exists()
    assert count(wh, "saes", "id = 'toy'") == 0
    for table, where in (("activation_partitions", "sae = 'toy'"), ("explanation_samples", "sae = 'toy'"),
                         ("explanations", "sae = 'toy'"), ("scores", "sae = 'toy' OR source_sae = 'toy'"),
                         ("correlation_runs", "true"), ("correlations", "true"), ("best_matches", "true"),
                         ("simulations", "score_id NOT IN (SELECT id FROM scores)")):
        assert count(wh, table, where) == 0, (table, where)
    # what toy_child computed from its own weights stays
    assert count(wh, "activation_partitions", "sae = 'toy_child'") == 1
    assert count(wh, "scores", "sae = 'toy_child' AND kind = 'self'") == child_self_scores
    assert count(wh, "simulations") > 0
    assert wh.scalar("SELECT count(*) FROM activations WHERE sae = 'toy'") == 0


def test_dropping_a_corpus_removes_its_tokens_and_everything_computed_on_it(explained):
    wh, db = explained, explained
    files = [partition_file(wh, "toy"), partition_file(wh, "toy_child")]
    assert sorted(db.corpora.drop("synth")) == sorted(files)
    assert not any(f.exists() for f in files)
    for table in ("corpora", "documents", "tokens", "activation_partitions", "correlation_runs", "correlations",
                  "best_matches", "explanation_samples", "explanations", "scores", "simulations"):
        assert count(wh, table) == 0, table
    assert count(wh, "saes") == 2 and count(wh, "vocab") > 0  # the SAEs and the tokenizer are not the corpus's


def test_a_cascade_inside_a_failed_transaction_drops_nothing(explained):
    wh, db = explained, explained
    file = partition_file(wh, "toy")
    before = {t: count(wh, t) for t in ("saes", "activation_partitions", "explanations", "scores", "best_matches")}
    with pytest.raises(RuntimeError):
        with db.transaction() as con:
            assert db.saes.drop("toy", con) == [file]
            raise RuntimeError("something later in the same transaction fails")
    assert file.exists()
    assert {t: count(wh, t) for t in before} == before
    assert wh.scalar("SELECT count(*) FROM activations WHERE sae = 'toy'") > 0


def test_explanations_of_an_sae_go_with_the_transfer_rows_that_name_it_on_either_side(explained):
    wh, db = explained, explained
    toy_self = count(wh, "scores", "sae = 'toy' AND kind = 'self'")
    with db.transaction() as con:
        db.explanations.drop_for(con, sae="toy_child")
    assert count(wh, "scores", "sae = 'toy_child' OR source_sae = 'toy_child'") == 0
    assert count(wh, "explanation_samples", "sae = 'toy_child'") == 0
    assert count(wh, "scores", "sae = 'toy' AND kind = 'self'") == toy_self
    with db.transaction() as con:
        db.explanations.drop_for(con, sae="toy")
    assert count(wh, "scores") == count(wh, "simulations") == count(wh, "explanations") == 0


def test_correlation_runs_naming_an_sae_on_either_side_go_with_their_rows(interp_warehouse):
    wh, db = interp_warehouse, interp_warehouse
    with db.transaction() as con:
        db.correlations.drop_runs(con, corpus="other")
    assert count(wh, "correlation_runs") == 1 and count(wh, "best_matches") == 15
    with db.transaction() as con:
        db.correlations.drop_runs(con, sae="toy_child")  # toy_child is sae_b of run 1
    assert count(wh, "correlation_runs") == count(wh, "correlations") == count(wh, "best_matches") == 0


def test_replacing_a_model_rewrites_its_lineage_and_keeps_its_saes(interp_warehouse):
    db = interp_warehouse
    with db.transaction() as con:
        db.models.replace(con, {"name": "child", "kind": "base", "path": "/m/child2"}, [], None, None, None)
    assert db.models.get("child")["parents"] == [] and db.models.get("child")["path"] == "/m/child2"
    assert db.saes.get("toy_child")["model"] == "child"
    with pytest.raises(FeatstoreError, match="unknown model 'ghost'"):
        db.models.get("ghost")


def test_named_queries_load_by_name_and_pass_only_their_parameters(interp_warehouse):
    assert "DELETE FROM correlation_runs" in sql("correlation/drop_runs")
    with pytest.raises(FeatstoreError, match="no named query sql/queries/nope/nothing.sql"):
        sql("nope/nothing")
    with interp_warehouse.connect() as con:
        assert run(con, "correlation/run_id", sae_a="toy", sae_b="toy_child", corpus="synth", stat="all_tokens",
                   unused="ignored").fetchone() == (1,)
        with pytest.raises(FeatstoreError, match="cannot be part of a table name"):
            run(con, "correlation/check_values", side="a; DROP TABLE saes", by_tok=True, lo=0, hi=1)
    assert count(interp_warehouse, "saes") == 2


def test_named_queries_are_never_applied_as_migrations(interp_warehouse):
    applied = interp_warehouse.query("SELECT file FROM schema_migrations").column(0).to_pylist()
    assert applied and not any("queries" in name for name in applied)


def test_the_statistics_registry_names_existing_sql_and_drives_the_cli(interp_warehouse):
    from cli import main

    assert statistic_names() == ("all_tokens", "cofiring", "token_type_mean")
    macros = set(interp_warehouse.query("SELECT function_name FROM duckdb_functions()").column(0).to_pylist())
    for stat in STATISTICS.values():
        assert stat.rows in macros and sql(stat.kernel)
    for command in ("correlate", "persistence", "transfer"):
        [option] = [p for p in main.commands[command].params if p.name == "stat"]
        assert tuple(option.type.choices) == statistic_names()
    with pytest.raises(FeatstoreError, match="unknown statistic 'spearman'; use one of all_tokens, cofiring"):
        get_statistic("spearman")
    with pytest.raises(FeatstoreError, match="'cofiring' is registered already"):
        register(Statistic("cofiring", "again", rows="corr_occurrences", kernel="correlation/block_moments"))
