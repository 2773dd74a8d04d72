"""Fixtures shared by the whole suite.

PostgreSQL: tests marked ``postgres`` take their URL from ``SWEEPS_TEST_POSTGRES_URL``
(default: the local server with trust authentication). Without a server they skip,
except where ``SWEEPS_REQUIRE_POSTGRES=1`` (CI sets it): there an unreachable server
fails the run, so CI never passes by skipping the distributed tests.

MariaDB/MySQL likewise: tests marked ``mariadb`` take ``SWEEPS_TEST_MARIADB_URL`` (default:
root without a password on 127.0.0.1:3306, database ``test``), skip without a server and
fail instead where ``SWEEPS_REQUIRE_MARIADB=1`` (CI sets it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_TEST_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


def _postgres_server_url() -> str:
    return os.environ.get("SWEEPS_TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL)


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The URL of a reachable PostgreSQL server (skips or fails if there is none)."""
    import sqlalchemy as sa

    url = _postgres_server_url()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        message = f"PostgreSQL at {sa.make_url(url).render_as_string()} is not reachable: {exc}"
        if os.environ.get("SWEEPS_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    # pool_pre_ping: the server may have restarted since this engine pooled a connection
    # (an operator, CI starting it); a stale admin connection must not fail the next test.
    # The reliability suite's restarts use a private cluster of their own.
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(scope="session")
def mariadb_server_url() -> str:
    """The URL of a reachable MariaDB/MySQL server (skips or fails if there is none)."""
    import sqlalchemy as sa

    url = os.environ.get("SWEEPS_TEST_MARIADB_URL", DEFAULT_TEST_MARIADB_URL)
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        message = f"MariaDB at {sa.make_url(url).render_as_string()} is not reachable: {exc}"
        if os.environ.get("SWEEPS_REQUIRE_MARIADB") == "1":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def mariadb_url(mariadb_server_url: str) -> Iterator[str]:
    """A fresh, empty MariaDB/MySQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    name = f"ms_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_server_url, pool_pre_ping=True)
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE `{name}`")
    url = sa.make_url(mariadb_server_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
        admin.dispose()
