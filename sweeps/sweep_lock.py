"""The sweep lock: one lock every worker of a sweep shares, whatever machine it runs on.

What it protects: "set FAIL, then re-queue" is one step for the trial gate. A stale check
that finds dead trials, and a worker that fails and re-queues its own interrupted trials,
hold the lock across both writes (:mod:`sweeps.lifecycle`), and the trial gate counts and
asks under it (:mod:`sweeps.trial_gate`). Without it, a gate asking between the FAIL and
the re-queue sees a free slot and no WAITING retry, starts a fresh configuration in the
dead trial's place, and the retry, queued a moment later, is left WAITING when the sweep
reaches its total. The schema lock (:data:`SCHEMA_LOCK`) serialises opening a database
(creating tables is not safe to race).

The lock is PostgreSQL's session advisory lock (``pg_advisory_lock``), MySQL's named lock
(``GET_LOCK``), a ``flock`` on a file next to a SQLite database, or a thread lock for an
in-memory database. Not re-entrant.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SCHEMA_LOCK: Final = "momentum-sweeps:open"
"""The name of the lock held while a database's schema and a sweep's study are created."""

SweepLock = Callable[[], contextlib.AbstractContextManager[None]]
"""Enter ``lock()`` to hold a sweep's lock; not re-entrant."""


def sweep_lock(engine: Engine, url: str, name: str) -> SweepLock:
    """A lock every worker of the sweep ``name`` shares, whatever machine it runs on."""
    backend = sa.make_url(url).get_backend_name()
    key = zlib.crc32(f"momentum-sweeps:{name}".encode()) & 0x7FFFFFFF
    if backend == "postgresql":

        @contextlib.contextmanager
        def advisory() -> Iterator[None]:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()

        return advisory
    if backend in ("mysql", "mariadb"):

        @contextlib.contextmanager
        def named() -> Iterator[None]:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT GET_LOCK(:key, 60)"), {"key": f"ms{key}"})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT RELEASE_LOCK(:key)"), {"key": f"ms{key}"})
                    connection.commit()

        return named
    database = sa.make_url(url).database
    if backend == "sqlite" and database not in (None, "", ":memory:"):
        path = Path(f"{database}.lock")

        @contextlib.contextmanager
        def file_lock() -> Iterator[None]:
            with path.open("a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

        return file_lock
    lock = threading.Lock()

    @contextlib.contextmanager
    def in_process() -> Iterator[None]:
        with lock:
            yield

    return in_process
