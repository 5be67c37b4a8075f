"""The Spark SQL engine (pyspark local[2]) against the SQL engine on the same warehouses: one
SparkSession for the module, small data."""

from __future__ import annotations

import pytest
from test_correlate import data, filled, stored  # noqa: F401  (fixtures)
from test_engine_torch import STATS, same_results

from featstore.correlate import correlate


@pytest.fixture(scope="module")
def spark():
    from featstore.engines.spark import session

    spark = session("local[2]")
    spark.conf.set("spark.sql.shuffle.partitions", "4")
    yield spark
    spark.stop()


@pytest.mark.parametrize("stat", STATS)
def test_spark_engine_equals_sql_engine(spark, filled, stat):
    sql_run = correlate(filled, "sa", "sb", corpus="c", stat=stat, engine="sql", progress=False)
    expected = stored(filled, sql_run["id"])
    run = correlate(filled, "sa", "sb", corpus="c", stat=stat, engine="spark", progress=False)
    assert run["id"] == sql_run["id"] and run["engine"] == "spark"
    assert (run["n_pairs"], run["n_cofiring_pairs"]) == (sql_run["n_pairs"], sql_run["n_cofiring_pairs"])
    assert same_results(expected, stored(filled, run["id"]), 0.2, tol=1e-6) == 0
    assert not list((filled.root / "staging").iterdir())  # the staging folder is gone after the commit


def test_spark_token_type_mean_on_real_tokens(spark, interp_warehouse):
    sql_run = correlate(interp_warehouse, "toy", "toy_child", stat="token_type_mean", engine="sql", r_floor=-1.0, progress=False)
    expected = stored(interp_warehouse, sql_run["id"])
    run = correlate(interp_warehouse, "toy", "toy_child", stat="token_type_mean", engine="spark", r_floor=-1.0, progress=False)
    assert run["n_pairs"] == sql_run["n_pairs"] > 0
    assert same_results(expected, stored(interp_warehouse, run["id"]), -1.0, tol=1e-6) <= 1  # one exact tie at r = 1.0


def test_cli_spark_engine(spark, filled):
    from click.testing import CliRunner

    from cli import main

    done = CliRunner().invoke(main, ["--warehouse", str(filled.root), "correlate", "sa", "sb", "--engine", "spark",
                                     "--spark-master", "local[2]"])
    assert done.exit_code == 0, done.output
    assert "(all_tokens, 240 tokens, spark)" in done.output
