"""Engines and sessions for the results database, on SQLite, PostgreSQL or MySQL/MariaDB.

URLs are SQLAlchemy URLs. The default is ``sqlite:///sweeps.db`` (the embedded store, a
file in the working directory); ``SWEEPS_STORAGE`` overrides it. A bare ``postgresql://``
URL uses psycopg 3 and a bare ``mysql://``/``mariadb://`` URL uses PyMySQL.

Several processes may write one SQLite file at once: the engine turns on WAL journaling
(readers never block the writer), waits up to 30 s for a lock instead of failing with
"database is locked", and opens every transaction with ``BEGIN IMMEDIATE`` so that a
transaction that reads and then writes takes the write lock up front (a deferred
transaction that has to upgrade its lock fails at once, without waiting, when another
process wrote meanwhile). Read-only callers (:mod:`storage.queries`) open deferred
transactions through :func:`read_only`.

A URL is printed or logged only through :func:`hide_password`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, quote_plus

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import StorageError, StorageUnavailableError, StorageUsageError

DEFAULT_URL: Final = "sqlite:///sweeps.db"
STORAGE_ENV_VAR: Final = "SWEEPS_STORAGE"
SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
"""How long a SQLite writer waits for another process's write lock before giving up."""
CONNECT_TIMEOUT_S: Final = 10
"""How long a connection to a database server may take before the server counts as down."""

_READ_ONLY_OPTION: Final = "ms_read_only"
_QUERY_PASSWORD: Final = re.compile(
    r"((?:password|passwd|pwd)(?:=|%3D))[^&\s]*", re.IGNORECASE
)
_QUERY_VALUE: Final = re.compile(r"([?&][^=&?]*=)[^&]*")
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file (https://sqlite.org/fileformat.html)."""
_DRIVERS: Final = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def default_url() -> str:
    """``$SWEEPS_STORAGE`` if set and not empty, else ``sqlite:///sweeps.db``."""
    return os.environ.get(STORAGE_ENV_VAR) or DEFAULT_URL


def normalize_url(url: str | URL) -> str:
    """The URL with the project's default driver for its backend, as a string.

    ``postgresql://`` (and ``postgres://``) become ``postgresql+psycopg://``, ``mysql://``
    becomes ``mysql+pymysql://``, ``mariadb://`` becomes ``mariadb+pymysql://``; URLs that
    name a driver are returned unchanged.

    Raises:
        StorageUsageError: the text is not a SQLAlchemy URL.
    """
    parsed = _parse(url)
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    return parsed.render_as_string(hide_password=False)


def hide_password(url: str | URL) -> str:
    """The URL with its password shown as ``***``; safe to print and log.

    Works on text that is not a valid URL too: everything between where the user name
    starts (after ``//``, else after the first ``:``) and the last ``@`` is masked, so a
    ``user:password@`` is hidden whatever surrounds it. A ``password=`` (or ``passwd=``,
    ``pwd=``) query parameter is masked as well.
    """
    if isinstance(url, URL):
        return _mask_query_password(_render_hidden(url))
    text = str(url)
    try:
        return _mask_query_password(_render_hidden(sa.make_url(text)))
    except Exception:
        # Unparsable: which part is a password is unknown, so every query value is hidden too.
        return _QUERY_VALUE.sub(r"\1***", _mask_credentials(text))


def _render_hidden(url: URL) -> str:
    """The URL rendered with ``***`` for its password, wherever else that text appears too
    (a password typed into the database name when a ``?`` or ``@`` went missing)."""
    rendered = url.render_as_string(hide_password=True)
    password = str(url.password) if url.password else ""
    if len(password) >= 3:
        for form in {password, quote_plus(password), quote(password, safe="")}:
            rendered = rendered.replace(form, "***")
    return rendered


def _mask_credentials(text: str) -> str:
    """``text`` with anything that may be a ``user:password`` replaced by ``***``.

    The user name starts after ``//`` (else after the first ``:``). With an ``@``, all up
    to the last ``@`` is masked; without one (an ``@`` typed wrong or lost), everything
    after a colon up to the next ``/``, which may be a password where a port should be.
    """
    slashes = text.find("//")
    colon = text.find(":")
    if slashes >= 0 and (colon < 0 or slashes <= colon + 1):
        start = slashes + 2
    elif colon >= 0:
        start = colon + 1
    else:
        start = 0
    at = text.rfind("@")
    if at >= start:
        credentials = text[start:at]
        rest = text[at:]
        password = credentials.partition(":")[2]
        if len(password) >= 3:  # typed again elsewhere (a query whose "?p" went missing)
            rest = rest.replace(password, "***")
        return f"{text[:start]}***{rest}"
    end = text.find("/", start)
    end = len(text) if end < 0 else end
    separator = text.find(":", start, end)
    if separator < 0:
        return text
    return f"{text[: separator + 1]}***{text[end:]}"


def _mask_query_password(text: str) -> str:
    return _QUERY_PASSWORD.sub(r"\1***", text)


def create_engine(
    url: str | URL | None = None, *, pool_size: int = 2, max_overflow: int = 2
) -> Engine:
    """An engine for the results database at ``url`` (default: :func:`default_url`).

    SQLite: WAL journal, a 30 s busy timeout and ``BEGIN IMMEDIATE`` transactions (see the
    module docstring), so local worker processes can write the same file. PostgreSQL and
    MySQL/MariaDB: ``pool_pre_ping`` (a connection the server dropped is replaced, not
    used), a pool of ``pool_size`` connections plus ``max_overflow``, a connect timeout.
    Nothing connects until first use; call ``engine.dispose()`` when done.

    An engine is thread-safe and may be shared by the threads of one process; after
    ``fork`` create a new one (or call ``engine.dispose(close=False)`` in the child).

    Raises:
        StorageUsageError: the URL is malformed or names an unknown backend or driver.
        StorageError: the SQLite file exists but is not an intact SQLite database
            (:func:`check_sqlite_file`).
    """
    parsed = _parse(normalize_url(url if url is not None else default_url()))
    kwargs: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        check_sqlite_file(parsed)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)
        if backend == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        elif backend in ("mysql", "mariadb"):
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
            kwargs["pool_recycle"] = 3600
    try:
        with warnings.catch_warnings():
            # pysqlite ignores query arguments without uri=true, and says so on stderr; a
            # command's output stays its one line (the URL is used as SQLite reads it).
            warnings.filterwarnings("ignore", "Query string argument", sa.exc.SAWarning)
            engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise StorageUsageError(
            f"Cannot use the storage URL {hide_password(parsed)}: {_first_line(exc)};"
            " expected e.g. sqlite:///sweeps.db or postgresql://user@host/db."
        ) from None
    if backend == "sqlite":
        _configure_sqlite(engine)
    else:
        _refuse_unknown_arguments(engine)
    return engine


def _refuse_unknown_arguments(engine: Engine) -> None:
    """A query argument the driver does not take (``?sslmode=`` on PyMySQL) is a usage
    error naming it, not the driver's ``TypeError`` from inside the connection pool."""
    shown = hide_password(engine.url)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.loaded_dbapi.connect(*cargs, **cparams)
        except TypeError as exc:
            if "unexpected keyword argument" not in str(exc):
                raise
            argument = str(exc).rsplit("argument", 1)[-1].strip()
            raise StorageUsageError(
                f"The storage URL {shown} passes {argument} to the {engine.driver} driver,"
                " which does not accept it; remove it from the URL's query string."
            ) from None


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A ``sessionmaker`` for ``engine``; use as ``with factory.begin() as session: ...``.

    Objects stay readable after commit (``expire_on_commit=False``), so a writer can keep
    the ``TrialRun`` it added and use its ``id`` in later transactions. A sessionmaker is
    thread-safe; a Session is not (one per thread).
    """
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A connection for reading: on SQLite its transactions begin deferred (no write lock)."""
    with engine.connect() as connection:
        yield connection.execution_options(**{_READ_ONLY_OPTION: True})


@contextmanager
def unavailable_as_storage_error(url: str | URL) -> Iterator[None]:
    """Turn a failure to reach the database into :class:`StorageUnavailableError`.

    The message is one sentence naming the URL with its password hidden; the driver's own
    message is kept to its first line, with the password scrubbed in case it echoes it.
    """
    try:
        yield
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise unavailable_error(url, exc) from None
    except sa.exc.DatabaseError as exc:
        if type(exc) is not sa.exc.DatabaseError:  # integrity, programming, data errors
            raise
        raise unreadable_error(url, exc) from None


def unreadable_error(url: str | URL, exc: BaseException) -> StorageError:
    """The :class:`StorageError` for a database file the driver cannot read (SQLite's
    "file is not a database", "database disk image is malformed")."""
    return StorageError(
        f"The results database at {hide_password(url)} cannot be read:"
        f" {_scrubbed_reason(url, exc)}; it was left unchanged."
    )


def check_sqlite_file(url: str | URL) -> None:
    """Refuse a SQLite file that is not an intact SQLite database, before SQLite opens it.

    A missing or empty file is fine (SQLite makes a new database there). Otherwise the file
    must start with SQLite's 16-byte header string, its header's fixed fields must hold
    the values every SQLite file has, and, where the header's page count is
    valid (its "version-valid-for" number equals its change counter, offsets 92 and 24 of
    the header in https://sqlite.org/fileformat.html section 1.3), hold at least that many
    pages of the header's page size: a shorter file was truncated. Only the first 100
    bytes are read; nothing is written.

    Raises:
        StorageError: the file is not a SQLite database, or is truncated.
    """
    database = _parse(url).database
    if database in (None, "", ":memory:") or database.startswith("file:"):
        return
    path = Path(database)
    try:
        with path.open("rb") as file:
            header = file.read(100)
        size = path.stat().st_size
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return  # SQLite's own error (or a new database) says what is wrong
    if not header:
        return
    shown = hide_password(url)
    if not header.startswith(SQLITE_MAGIC):
        raise StorageError(
            f"The file of the results database at {shown} is not a SQLite database"
            " (it does not start with SQLite's header); it was left unchanged."
        )
    if len(header) < 100:
        raise StorageError(
            f"The SQLite file of the results database at {shown} is truncated"
            f" ({size} bytes, shorter than SQLite's 100-byte header); it was left unchanged."
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    # Fixed fields of a valid header (fileformat.html 1.3): a power-of-two page size of
    # 512 to 65536, read/write versions 1 (rollback) or 2 (WAL), payload fractions 64/32/32.
    if (
        page_size < 512
        or page_size & (page_size - 1)
        or header[18] not in (1, 2)
        or header[19] not in (1, 2)
        or header[21:24] != b"\x40\x20\x20"
    ):
        raise StorageError(
            f"The file of the results database at {shown} has a damaged SQLite header;"
            " it was left unchanged."
        )
    pages = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    # While a WAL file exists another process may be checkpointing into the file, which
    # can be shorter than its new header for a moment: no size check then.
    checkpointing = path.with_name(path.name + "-wal").exists()
    if counter_valid and not checkpointing and page_size and size < pages * page_size:
        raise StorageError(
            f"The SQLite file of the results database at {shown} is truncated ({size} bytes;"
            f" its header says {pages} pages of {page_size} bytes); it was left unchanged."
        )


def unavailable_error(url: str | URL, exc: BaseException) -> StorageUnavailableError:
    """The :class:`StorageUnavailableError` for a failed connection to ``url``."""
    reason = _scrubbed_reason(url, exc)
    return StorageUnavailableError(
        f"Cannot reach the results database at {hide_password(url)}: {reason}."
        if reason
        else f"Cannot reach the results database at {hide_password(url)}."
    )


def _scrubbed_reason(url: str | URL, exc: BaseException) -> str:
    """The first line of the driver's message, with the URL's password replaced by ***."""
    reason = _first_line(getattr(exc, "orig", None) or exc)
    password = _password(url)
    if password:
        reason = reason.replace(password, "***")
    return reason


def _parse(url: str | URL) -> URL:
    if isinstance(url, URL):
        return url
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise StorageUsageError(
            f"The storage URL {hide_password(url)!r} is not a database URL;"
            " expected e.g. sqlite:///sweeps.db or postgresql://user@host/db."
        ) from None
    except ValueError:  # SQLAlchemy parses the port with int()
        raise StorageUsageError(
            f"The storage URL {hide_password(url)!r} has a port that is not a number;"
            " a port is a whole number from 1 to 65535, e.g. postgresql://user@host:5432/db."
        ) from None
    if parsed.database is not None and "\x00" in parsed.database:
        raise StorageUsageError(
            f"The storage URL {hide_password(parsed)!r} names a database with a NUL character"
            " (%00), which no database accepts."
        )
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise StorageUsageError(
            f"The storage URL {hide_password(parsed)!r} has the port {parsed.port}; a port is"
            " a whole number from 1 to 65535, e.g. postgresql://user@host:5432/db."
        )
    return parsed


def _password(url: str | URL) -> str | None:
    try:
        password = _parse(url).password
    except StorageUsageError:
        return None
    return str(password) if password else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout and explicit BEGIN on every new SQLite connection.

    pysqlite's own transaction handling is turned off (``isolation_level = None``) so the
    ``begin`` listener decides how each transaction starts (SQLAlchemy's documented recipe).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if engine.url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
