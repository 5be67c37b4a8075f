"""The lake backend's tests: a real PostgreSQL server started for the session, a fresh database per test.

They run in the lake's own environment (duckdb 1.5 with its ducklake and postgres extensions: `make test`
runs them after the main suite with that environment first on the path); the main suite does not collect
them (tests/conftest.py)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from pgserver import Postgres


@pytest.fixture(scope="session")
def postgres():
    folder = Path(tempfile.mkdtemp(prefix="featstore-postgres-"))  # not under pytest's root-only folder
    server = Postgres(folder / "cluster")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def lake_url(postgres) -> str:
    return postgres.database()


@pytest.fixture
def lake_warehouse(tmp_path, lake_url):
    from featstore.warehouse import Warehouse

    return Warehouse.create_lake(tmp_path / "lakewh", lake_url)

