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
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

import sqlalchemy as sa

from sweeps.stop import check_stop

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SCHEMA_LOCK: Final = "momentum-sweeps:open"
"""The name of the lock held while a database's schema and a sweep's study are created."""


class SweepLock(Protocol):
    """Enter ``lock()`` to hold a sweep's lock; not re-entrant.

    ``lock(stoppable=True)`` waits for the lock by polling it and checking this process's
    stop flag between tries (:func:`sweeps.stop.check_stop` raises ``StopRequested``), so a
    worker asked to stop while other workers hold the lock does not wait its turn. The
    lifecycle's own writes take the lock without it: a stopping worker must still record
    its interrupted trials.
    """

    def __call__(self, *, stoppable: bool = False) -> contextlib.AbstractContextManager[None]: ...


_POLL_S: Final = (0.005, 0.05)
"""A stoppable wait polls the lock, first every 5 ms, backing off to every 50 ms."""


def _wait_stoppably(try_once: Callable[[], bool]) -> None:
    """Call ``try_once`` until it takes the lock, checking the stop flag between tries."""
    delay = _POLL_S[0]
    while not try_once():
        check_stop()
        time.sleep(delay)
        delay = min(2 * delay, _POLL_S[1])


def sweep_lock(engine: Engine, url: str, name: str) -> SweepLock:
    """A lock every worker of the sweep ``name`` shares, whatever machine it runs on."""
    backend = sa.make_url(url).get_backend_name()
    key = zlib.crc32(f"momentum-sweeps:{name}".encode()) & 0x7FFFFFFF
    if backend == "postgresql":

        @contextlib.contextmanager
        def advisory(*, stoppable: bool = False) -> Iterator[None]:
            with engine.connect() as connection:
                if stoppable:
                    try_lock = sa.text("SELECT pg_try_advisory_lock(:key)")
                    _wait_stoppably(
                        lambda: bool(connection.execute(try_lock, {"key": key}).scalar())
                    )
                else:
                    connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()

        return advisory
    if backend in ("mysql", "mariadb"):

        @contextlib.contextmanager
        def named(*, stoppable: bool = False) -> Iterator[None]:
            with engine.connect() as connection:
                get = sa.text("SELECT GET_LOCK(:key, :wait)")
                if stoppable:
                    _wait_stoppably(
                        lambda: (
                            connection.execute(get, {"key": f"ms{key}", "wait": 0}).scalar() == 1
                        )
                    )
                else:
                    connection.execute(get, {"key": f"ms{key}", "wait": 60})
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
        def file_lock(*, stoppable: bool = False) -> Iterator[None]:
            with path.open("a") as handle:

                def try_once() -> bool:
                    try:
                        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        return False
                    return True

                if stoppable:
                    _wait_stoppably(try_once)
                else:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

        return file_lock
    lock = threading.Lock()

    @contextlib.contextmanager
    def in_process(*, stoppable: bool = False) -> Iterator[None]:
        if stoppable:
            _wait_stoppably(lambda: lock.acquire(blocking=False))
        else:
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    return in_process
