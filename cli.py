"""`featstore` command line: argument parsing and progress only; the work is in the library."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse


class FeatstoreGroup(click.Group):
    """Turns library errors into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except FeatstoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=FeatstoreGroup)
@click.option(
    "--warehouse",
    "warehouse_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="FEATSTORE_WAREHOUSE",
    default="warehouse",
    show_default=True,
    help="Warehouse folder (or set FEATSTORE_WAREHOUSE).",
)
@click.pass_context
def main(ctx: click.Context, warehouse_dir: Path) -> None:
    """featstore: track SAE features through fine-tuning and merging, in SQL."""
    ctx.obj = Warehouse(warehouse_dir)


pass_warehouse = click.make_pass_decorator(Warehouse)


def echo_table(table) -> None:
    """Print an Arrow table (or anything polars.from_arrow takes) as an aligned text table."""
    import polars as pl

    frame = pl.from_arrow(table) if not isinstance(table, pl.DataFrame) else table
    with pl.Config(tbl_rows=200, tbl_cols=30, fmt_str_lengths=80, tbl_hide_dataframe_shape=True):
        click.echo(frame)


# --- warehouse: corpora, registry, import (issue 2) -----------------------------------------------

# --- ingest (issue 2) -----------------------------------------------------------------------------

# --- correlate (issue 2) --------------------------------------------------------------------------

# --- model zoo: train, finetune, merge, merge-sweep (issue 3) -------------------------------------

# --- SAEs: train, evaluate, import (issue 4) -----------------------------------------------------

# --- interpretability: explain, score (issue 5) --------------------------------------------------

# --- pipeline: run, report, export, sql (issue 6) ------------------------------------------------


if __name__ == "__main__":
    main()
