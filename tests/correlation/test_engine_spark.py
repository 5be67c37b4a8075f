"""The Spark SQL engine (pyspark local[2]) against the SQL engine on the same warehouses: one
SparkSession for the module, small data."""

from __future__ import annotations

import pytest
from helpers import run_cli, same_results, split_into_parts, stored

from featstore.correlation.correlate import correlate


@pytest.fixture(scope="module")
def spark():
    from featstore.correlation.engines.spark import session

    spark = session("local[2]")
    assert spark.conf.get("spark.sql.shuffle.partitions") == "4"  # two per local core, not Spark's 200
    yield spark
    spark.stop()


@pytest.mark.parametrize("master, cores", [("local", 1), ("local[3]", 3), ("local[2,4]", 2), ("spark://host:7077", None),
                                           ("yarn", None), ("locally", None)])
def test_local_masters_get_their_core_count(master, cores):
    from featstore.correlation.engines.spark import local_cores

    assert local_cores(master) == cores


@pytest.mark.parametrize("stat", ["cofiring", "token_type_mean"])
def test_spark_engine_equals_sql_engine(spark, filled, stat):
    sql_run = correlate(filled, "sa", "sb", corpus="c", stat=stat, engine="sql", progress=False)
    expected = stored(filled, sql_run["id"])
    run = correlate(filled, "sa", "sb", corpus="c", stat=stat, engine="spark", progress=False)
    assert run["id"] == sql_run["id"] and run["engine"] == "spark"
    assert (run["n_pairs"], run["n_cofiring_pairs"]) == (sql_run["n_pairs"], sql_run["n_cofiring_pairs"])
    assert same_results(expected, stored(filled, run["id"]), 0.2, tol=1e-6) == 0
    assert not list((filled.root / "staging").iterdir())  # the staging folder is gone after the commit


def test_cli_spark_engine_all_tokens(spark, filled, monkeypatch):
    """all_tokens through `featstore correlate --engine spark`, including best partners that never co-fire
    (3 low ranks tracked, so the saturated features' full search runs too)."""
    from featstore.correlation.engines import spark as spark_engine

    monkeypatch.setattr(spark_engine, "LOW_RANKS", 3)

    sql_run = correlate(filled, "sa", "sb", corpus="c", engine="sql", progress=False)
    expected = stored(filled, sql_run["id"])
    done = run_cli(filled, "correlate", "sa", "sb", "--corpus", "c", "--engine", "spark", "--spark-master", "local[2]")
    assert done.exit_code == 0, done.output
    assert "(all_tokens, 240 tokens, spark)" in done.output
    assert f"{sql_run['n_cofiring_pairs']:,} co-firing pairs, {sql_run['n_pairs']:,} stored" in done.output
    assert same_results(expected, stored(filled, sql_run["id"]), 0.2, tol=1e-6) == 0
    assert expected[1][("a", 1)][1] < 0  # feature 1's best partner never co-fires with it


def test_engine_layout_and_spark_persistence_summary(spark, interp_warehouse, tmp_path):
    """The exported layout holds every table and partition; Spark's persistence_summary equals DuckDB's."""
    import polars as pl

    from featstore.correlation.engines.spark import persistence_summary
    from featstore.export.tables import export_layout

    layout = tmp_path / "layout"
    done = export_layout(interp_warehouse, layout)
    assert done["partition_files"] == 2 and (layout / "best_matches.parquet").exists()
    acts = pl.scan_parquet(layout / "activations" / "**" / "*.parquet", hive_partitioning=True).collect()
    assert acts.height == interp_warehouse.scalar("SELECT count(*) FROM activations")
    paths = pl.read_parquet(layout / "activation_partitions.parquet")["path"].to_list()
    assert all((layout / p).is_file() for p in paths)
    for threshold, stat in ((0.8, "all_tokens"), (0.3, "all_tokens"), (0.8, "cofiring")):
        expected = interp_warehouse.query("SELECT * FROM persistence_summary(threshold := ?, stat := ?)", [threshold, stat]).to_pylist()
        got = [row.asDict() for row in persistence_summary(spark, layout, threshold, stat).collect()]
        # the Spark file covers the Figure 2 counts; DuckDB's view has since gained method/constant columns
        assert got == [{k: row[k] for k in got[0]} for row in expected] if got else expected == []
    assert expected == [] and got == []  # no cofiring run: both empty
    assert export_layout(interp_warehouse, layout)["tables"] == done["tables"]  # a rerun replaces the layout


def test_engine_layout_refuses_a_foreign_folder(interp_warehouse, tmp_path):
    from featstore.errors import FeatstoreError
    from featstore.export.tables import export_layout

    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FeatstoreError, match="is not an engine layout"):
        export_layout(interp_warehouse, tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_spark_engine_reads_partitions_of_several_parts(spark, filled, tmp_path):
    """Last in the module: both sides republished as 3 part files each, as a sharded ingest leaves them."""
    expected = stored(filled, correlate(filled, "sa", "sb", corpus="c", stat="cofiring", engine="sql", progress=False)["id"])
    for sae in ("sa", "sb"):
        assert len(split_into_parts(filled, sae, "c", 3, tmp_path)) == 3
    run = correlate(filled, "sa", "sb", corpus="c", stat="cofiring", engine="spark", progress=False)
    assert same_results(expected, stored(filled, run["id"]), 0.2, tol=1e-6) == 0
