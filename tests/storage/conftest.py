"""Backends for the storage contract suite: every test that takes ``storage_url`` runs on
SQLite, on PostgreSQL (marked ``postgres``) and on MariaDB/MySQL when one listens on
127.0.0.1:3306 (root, empty password, database ``test``; skipped when absent)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

MARIADB_URL = os.environ.get("SWEEPS_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file in a fresh temporary directory."""
    return f"sqlite:///{tmp_path / 'sweeps.db'}"


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """A fresh MariaDB/MySQL database for one test, dropped afterwards (skips if no server)."""
    import sqlalchemy as sa

    admin = sa.create_engine(MARIADB_URL, connect_args={"connect_timeout": 3})
    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE `{name}`")
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"MariaDB/MySQL is not reachable at 127.0.0.1:3306: {type(exc).__name__}")
    try:
        yield sa.make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "mariadb",
    ]
)
def storage_url(request: pytest.FixtureRequest) -> str:
    """A URL of an empty database on each backend in turn."""
    fixture = {"sqlite": "sqlite_url", "postgresql": "postgres_url", "mariadb": "mariadb_url"}
    return request.getfixturevalue(fixture[request.param])
