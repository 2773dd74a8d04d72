"""The schema's version: Alembic migrations shipped in ``storage/migrations``.

:func:`upgrade` applies every migration (``sweeps db upgrade``). :func:`ensure_current` is
what every program calls before using the database: it creates the tables in a database
that has none of ours yet (so ``sweeps demo`` just works) and refuses an older schema with
a message that says how to upgrade, instead of failing later on a missing column.

The revision lives in ``ms_alembic_version``, apart from Optuna's ``alembic_version``.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, Connection, Engine

from storage.engine import create_engine, hide_password, unavailable_as_storage_error
from storage.errors import SchemaOutdatedError, StorageError

VERSION_TABLE: Final = "ms_alembic_version"
SCRIPT_LOCATION: Final = "storage:migrations"


def head_revision() -> str:
    """The newest revision this version of the package ships."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "storage/migrations has no revisions"
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at; None when it has no ``ms_`` tables yet."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine_or_url: Engine | str | URL | None = None, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest), in one transaction.

    Safe to run on an up-to-date database (it does nothing). Optuna's tables are left alone.

    Raises:
        StorageUnavailableError: the database cannot be reached.
    """
    engine, owned = _engine(engine_or_url)
    try:
        with unavailable_as_storage_error(engine.url), engine.begin() as connection:
            _run_upgrade(connection, revision)
    finally:
        if owned:
            engine.dispose()


def ensure_current(engine: Engine) -> None:
    """Make sure the database holds the newest schema before it is used.

    A database without our tables (a new file, or one holding only Optuna's tables) gets
    them created. Two processes doing this at once are fine: the loser of the race sees
    the winner's tables. Thread-safe; costs one small query when the schema is current.

    Raises:
        SchemaOutdatedError: the database was written by an older version of the schema;
            the message says to run ``sweeps db upgrade --storage URL``.
        StorageError: the database was written by a newer version of this package.
        StorageUnavailableError: the database cannot be reached.
    """
    head = head_revision()
    with unavailable_as_storage_error(engine.url):
        with engine.connect() as connection:
            current = current_revision(connection)
        if current == head:
            return
        if current is None:
            try:
                with engine.begin() as connection:
                    if current_revision(connection) is None:
                        _run_upgrade(connection, "head")
            except sa.exc.DBAPIError:
                # Another process created the schema between our check and our DDL.
                with engine.connect() as connection:
                    if current_revision(connection) != head:
                        raise
            return
    url = hide_password(engine.url)
    if current in _known_revisions():
        raise SchemaOutdatedError(
            f"The results database at {url} has schema revision {current} but this version"
            f" needs {head}; run `sweeps db upgrade --storage {url}` to upgrade it."
        )
    raise StorageError(
        f"The results database at {url} has schema revision {current}, which this version"
        f" (newest {head}) does not know; upgrade momentum-sweeps."
    )


def _run_upgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def _known_revisions() -> set[str]:
    return {
        script.revision
        for script in ScriptDirectory.from_config(_alembic_config()).walk_revisions()
    }


def _engine(engine_or_url: Engine | str | URL | None) -> tuple[Engine, bool]:
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return create_engine(engine_or_url), True
