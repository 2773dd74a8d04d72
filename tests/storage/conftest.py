"""Backends for the storage contract suite: every test that takes ``storage_url`` runs on
SQLite, on PostgreSQL (marked ``postgres``) and on MariaDB/MySQL (marked ``mariadb``); the
server fixtures are in ``tests/conftest.py``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in a fresh temporary directory."""
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def storage_url(request: pytest.FixtureRequest) -> str:
    """A URL of an empty database on each backend in turn."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mariadb": "mariadb_url"}
    return request.getfixturevalue(fixture[request.param])
