"""Outages (``sweeps.outage``): one deadline per worker, shared by every retrying write and
the heartbeat thread; a disconnect is described as an unreachable database."""

from __future__ import annotations

import logging
import time

import optuna
import psycopg
import pytest
import sqlalchemy as sa

from storage.errors import StorageUnavailableError
from sweeps import heartbeat
from sweeps.errors import SweepUsageError
from sweeps.outage import (
    OUTAGE_ENV_VAR,
    OutageClock,
    describe_failure,
    outage_timeout,
    retry_on_disconnect,
)

URL = "postgresql://db.example/sweeps"


def refused() -> sa.exc.OperationalError:
    """What psycopg raises (through SQLAlchemy) when the server is down."""
    orig = psycopg.OperationalError("connection failed: Connection refused")
    return sa.exc.OperationalError("SELECT 1", {}, orig)


def down() -> None:
    raise refused()


def optuna_wrapped() -> optuna.exceptions.StorageInternalError:
    """Optuna's wrapping of a disconnect during a commit (``storages/_rdb/storage.py``)."""
    error = optuna.exceptions.StorageInternalError(
        "An exception is raised during the commit. This typically happens due to invalid data"
        " in the commit, e.g. exceeding max length."
    )
    error.__cause__ = refused()
    return error


def test_retrying_writes_share_one_deadline_instead_of_one_each():
    """The first write waits out the worker's 0.6 s deadline; a second write in the same
    outage gives up at once instead of waiting 0.6 s of its own."""
    clock = OutageClock(0.6)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match="Cannot reach"):
        retry_on_disconnect(down, URL, clock=clock)
    first = time.monotonic() - started
    with pytest.raises(StorageUnavailableError):
        retry_on_disconnect(down, URL, clock=clock)
    second = time.monotonic() - started - first
    assert first >= 0.6
    assert second < 0.3


def test_a_write_that_gets_through_ends_the_outage():
    clock = OutageClock(0.6)
    with pytest.raises(StorageUnavailableError):
        retry_on_disconnect(down, URL, clock=clock)
    assert retry_on_disconnect(lambda: "written", URL, clock=clock) == "written"
    assert not clock.expired()


def test_the_outage_deadline_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(OUTAGE_ENV_VAR, "7.5")
    assert outage_timeout() == 7.5
    monkeypatch.setenv(OUTAGE_ENV_VAR, "soon")
    with pytest.raises(SweepUsageError, match=r"SWEEPS_OUTAGE_TIMEOUT='soon' is not a positive"):
        outage_timeout()


def test_a_disconnect_wrapped_by_optuna_is_described_as_an_unreachable_database():
    text = describe_failure(optuna_wrapped())
    assert text == "the database is unreachable (connection failed: Connection refused)"


def test_the_heartbeat_warns_that_the_database_is_unreachable_not_about_invalid_data(caplog):
    """Issue 17: during an outage the heartbeat warned "invalid data ... exceeding max
    length" (Optuna's message for any failed commit)."""

    def beat() -> None:
        raise optuna_wrapped()

    with caplog.at_level(logging.WARNING, logger="sweeps.heartbeat"):
        heartbeat._tolerate(beat, "The heartbeat of trial 3 failed")
    [record] = caplog.records
    assert record.getMessage() == (
        "The heartbeat of trial 3 failed: the database is unreachable"
        " (connection failed: Connection refused)"
    )
    assert "invalid data" not in caplog.text
