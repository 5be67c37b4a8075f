"""`--warehouse DIR` works before or after the subcommand, on every command."""

from __future__ import annotations

import click
import pytest
from helpers import invoke

from cli import hoist_global_options, main
from featstore.warehouse import Warehouse


def _leaf_commands(group: click.Group, path=()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*path, name))
        else:
            yield (*path, name)


COMMANDS = sorted(_leaf_commands(main))


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_takes_warehouse_after_its_name(path, tmp_path):
    result = invoke(*path, "--warehouse", str(tmp_path / "wh"), "--help")
    assert result.exit_code == 0, result.output


def test_the_warehouse_after_the_command_is_the_one_used(tmp_path):
    for name in "abc":  # reads never create a warehouse: start each with a write
        Warehouse(tmp_path / name).create()
    for args in (["export", "models", "--warehouse", str(tmp_path / "a")], ["--warehouse", str(tmp_path / "b"), "export", "models"],
                 ["export", "--warehouse=" + str(tmp_path / "c"), "models"]):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
    for name in "abc":
        assert (tmp_path / name / "exports" / "models.parquet").is_file()


def test_hoisting_stops_at_double_dash_and_leaves_values_alone():
    assert hoist_global_options(["sql", "SELECT 1", "--warehouse", "w"]) == ["--warehouse", "w", "sql", "SELECT 1"]
    assert hoist_global_options(["sql", "--", "--warehouse", "w"]) == ["sql", "--", "--warehouse", "w"]
    assert hoist_global_options(["sql", "--warehouse"]) == ["sql", "--warehouse"]  # no value: click reports it
