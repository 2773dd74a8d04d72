"""Database outages: one deadline per worker, and which errors an outage raises.

A restarted or briefly unreachable server raises ``OperationalError`` (or Optuna's
``StorageInternalError`` wrapping it); the pools' ``pool_pre_ping`` then replaces the dead
connections, so waiting and trying again is all a worker needs to do
(:func:`retry_on_disconnect`). Only transient errors are retried (:func:`is_disconnect`):
a lost or refused connection, a server shutting down, a SQLite lock past its busy timeout.
Anything else ("no such table", a refused password, a bad statement) is raised at once.

One deadline per worker, not per write: the worker's :class:`OutageClock` starts at the
first failed database operation of any of its threads and is reset by the next one that
succeeds. While the clock runs, every retrying write waits; once it has run for
``SWEEPS_OUTAGE_TIMEOUT`` seconds (default 120) every one of them raises
:class:`~storage.errors.StorageUnavailableError` at its next attempt, and the heartbeat
thread, which notices the outage even while the main thread trains, asks the worker to
stop (:data:`sweeps.stop.STOP`, reason :data:`OUTAGE`): the worker exits 1 with one
sentence within the deadline plus one retry interval, whatever write it was in. Before the
deadline nothing is lost: each retried operation is safe to repeat.

A stop requested by a signal during an outage shortens the deadline to
:data:`STOP_WRITES_S` after the signal, so an interrupted worker never waits for a
database that is gone.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import optuna
import sqlalchemy as sa

from storage.engine import unavailable_error
from storage.errors import StorageUnavailableError
from sweeps.errors import SweepUsageError
from sweeps.stop import STOP

OUTAGE_ENV_VAR: Final = "SWEEPS_OUTAGE_TIMEOUT"
DEFAULT_OUTAGE_S: Final = 120.0
"""How long a worker waits for an unreachable database before it exits 1."""
STOP_WRITES_S: Final = 3.0
"""How long a stopping worker keeps retrying the writes that record its interrupted trials."""
MAX_DELAY_S: Final = 4.0
OUTAGE: Final = "outage"
"""The reason of a stop requested because the database stayed unreachable too long."""


def outage_timeout() -> float:
    """``SWEEPS_OUTAGE_TIMEOUT`` in seconds (a positive number), else :data:`DEFAULT_OUTAGE_S`."""
    text = os.environ.get(OUTAGE_ENV_VAR, "").strip()
    if not text:
        return DEFAULT_OUTAGE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise SweepUsageError(f"{OUTAGE_ENV_VAR}={text!r} is not a positive number of seconds.")
    return value


class OutageClock:
    """Since when this worker has not reached its database; shared by all its threads."""

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self._since: float | None = None
        self._lock = threading.Lock()
        self.last_error: BaseException | None = None

    @property
    def timeout(self) -> float:
        return self.timeout_s if self.timeout_s is not None else outage_timeout()

    def failed(self, exc: BaseException) -> None:
        """A database operation failed with a transient error: start the clock."""
        with self._lock:
            if self._since is None:
                self._since = time.monotonic()
            self.last_error = exc

    def reached(self) -> None:
        """A database operation succeeded: the outage (if any) is over."""
        if self._since is not None:
            with self._lock:
                self._since = None
                self.last_error = None

    def deadline(self) -> float:
        """When the current outage becomes fatal (monotonic time; inf when none runs)."""
        since = self._since
        deadline = float("inf") if since is None else since + self.timeout
        if STOP.since is not None and since is not None:
            deadline = min(deadline, max(STOP.since, since) + STOP_WRITES_S)
        return deadline

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline()

    def reset(self) -> None:
        with self._lock:
            self._since = None
            self.last_error = None


CLOCK: Final = OutageClock()
"""This worker's outage clock (one per process: a worker is one process)."""


def retry_on_disconnect(
    operation: Callable[[], Any],
    url: str,
    *,
    budget_s: float | None = None,
    clock: OutageClock | None = None,
) -> Any:
    """Run ``operation``, retrying with backoff while the database is unreachable.

    The outage deadline is the worker's (:data:`CLOCK`), so retries in several places and
    threads share one budget; ``budget_s`` gives this call a clock of its own instead.
    After the deadline the failure becomes :class:`~storage.errors.StorageUnavailableError`
    (one sentence, password hidden). Each retried operation must be safe to repeat.
    """
    if clock is None:
        clock = OutageClock(budget_s) if budget_s is not None else CLOCK
    delay = 0.25
    while True:
        try:
            result = operation()
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            optuna.exceptions.StorageInternalError,
            StorageUnavailableError,
        ) as exc:
            if not is_disconnect(exc):
                raise  # the statement, not the connection: trying again cannot help
            clock.failed(exc)
            remaining = clock.deadline() - time.monotonic()
            if remaining <= 0:
                if isinstance(exc, StorageUnavailableError):
                    raise
                raise unavailable_error(url, exc.__cause__ or exc) from None
            time.sleep(min(delay, remaining))
            delay = min(2 * delay, MAX_DELAY_S)
            continue
        clock.reached()
        return result


def describe_failure(exc: BaseException) -> str:
    """One phrase for a failed database operation: "the database is unreachable (...)" for
    a disconnect (Optuna wraps those in a message about "invalid data ... exceeding max
    length", which misleads), else the exception's type and first line."""
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    cause = cause or exc
    if is_disconnect(exc):
        detail = str(getattr(cause, "orig", None) or cause).strip().splitlines()
        reason = detail[0] if detail else type(cause).__name__
        return f"the database is unreachable ({reason})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection (not the statement) failed, so trying again helps.

    SQLAlchemy's own verdict (``connection_invalidated``) first; then the driver's error:
    :func:`_transient_driver_error`. An ``OperationalError`` from a driver this function does
    not know is taken as transient, as before.
    """
    if isinstance(exc, StorageUnavailableError):
        return True
    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sa.exc.DBAPIError) and cause.connection_invalidated:
        return True
    if not isinstance(cause, (sa.exc.OperationalError, sa.exc.InterfaceError)):
        return False
    return _transient_driver_error(cause.orig)


#: PostgreSQL SQLSTATEs worth another try: a server shutting down or starting up
#: (57P01-57P03); whole classes: connection exceptions (08) and a transaction rolled back
#: by a serialization failure or deadlock (40), which is safe to run again.
_TRANSIENT_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03"})
_TRANSIENT_SQLSTATE_CLASSES: Final = ("08", "40")
#: MySQL/MariaDB client and server codes worth another try: cannot connect (2002, 2003),
#: server gone or lost (2006, 2013, 2055), shutdown in progress (1053), connection killed
#: (1927), lock wait timeout (1205), deadlock (1213).
_TRANSIENT_MYSQL_CODES: Final = frozenset({2002, 2003, 2006, 2013, 2055, 1053, 1927, 1205, 1213})


def _transient_driver_error(orig: BaseException | None) -> bool:
    """Whether the DBAPI error ``orig`` (inside an OperationalError/InterfaceError) is transient.

    - SQLite: only a lock ("database is locked", "... is busy") once the busy timeout ran
      out; "no such table", "unable to open database file" and the like are permanent.
    - PostgreSQL (psycopg): no SQLSTATE (the client could not reach the server) or one of
      :data:`_TRANSIENT_SQLSTATES` / :data:`_TRANSIENT_SQLSTATE_CLASSES`; a refused
      password (28P01) or a missing database (3D000) is permanent.
    - MySQL/MariaDB (PyMySQL): :data:`_TRANSIENT_MYSQL_CODES`.
    """
    if isinstance(orig, sqlite3.Error):
        text = str(orig).lower()
        return "locked" in text or "busy" in text
    sqlstate = getattr(orig, "sqlstate", _NO_SQLSTATE)
    if sqlstate is not _NO_SQLSTATE:  # psycopg
        return (
            sqlstate is None
            or sqlstate in _TRANSIENT_SQLSTATES
            or str(sqlstate).startswith(_TRANSIENT_SQLSTATE_CLASSES)
        )
    if type(orig).__module__.startswith("pymysql"):
        code = orig.args[0] if orig is not None and orig.args else None
        return code in _TRANSIENT_MYSQL_CODES
    return True


_NO_SQLSTATE: Final = object()
