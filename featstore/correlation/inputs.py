"""The rows each side of a correlation joins on, read from the activation partitions and checked.

Every engine starts here: `load_rows` makes `corr_work.raw_<side>` (key, feature, x) through the
statistic's rows macro and refuses values that would silently corrupt the statistics.
"""

from __future__ import annotations

import duckdb

from featstore.errors import FeatstoreError
from featstore.warehouse.queries import run as run_query

WORK = "corr_work"  # attached per run, so parallel cursors share its tables; gone when detached
RESULTS = {"pairs": f"{WORK}.pairs", "best_a": f"{WORK}.best_a", "best_b": f"{WORK}.best_b"}  # what the store step reads


def load_rows(con: duckdb.DuckDBPyConnection, run: dict, side: str, kind: str = "TABLE") -> str:
    """corr_work.raw_{side}: the (key, feature, x) rows one side's statistic joins on, checked; returns its name.

    kind VIEW checks the rows streamed from the partitions without holding them (the Spark engine's case)."""
    sae, corpus = (run[k].replace("'", "''") for k in (f"sae_{side}", "corpus"))  # a view takes no parameters
    con.execute(f"CREATE {kind} {WORK}.raw_{side} AS SELECT * FROM {run['statistic'].rows}('{sae}', '{corpus}')")
    check_values(con, side, run)
    return f"{WORK}.raw_{side}"


def check_values(con: duckdb.DuckDBPyConnection, side: str, run: dict) -> None:
    """Refuse activations that would silently corrupt the statistics (implicit zeros need every tok in the corpus)."""
    bad, top_feature, outside = run_query(
        con, "correlation/check_values", side=side, by_tok=run["statistic"].keyed_by_tok,
        lo=run["tok_start"], hi=run["tok_start"] + run["n_tokens"],
    ).fetchone()
    sae = run[f"sae_{side}"]
    if bad:
        raise FeatstoreError(f"activations of SAE {sae!r} on {run['corpus']!r} hold {bad} non-finite or non-positive values; re-ingest them")
    if outside:
        raise FeatstoreError(f"{outside} activations of SAE {sae!r} lie outside the tokens of corpus {run['corpus']!r}; re-ingest them")
    if top_feature is not None and top_feature >= run[f"d_sae_{side}"]:
        raise FeatstoreError(f"activations of SAE {sae!r} name feature {top_feature}, beyond its d_sae {run[f'd_sae_{side}']}")
