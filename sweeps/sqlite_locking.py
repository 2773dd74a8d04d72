"""SQLite: make Optuna's transactions take the write lock up front.

With pysqlite's default deferred transactions, a transaction that reads and then writes
fails at once with "database is locked" when another worker wrote in between; with
``BEGIN IMMEDIATE`` it waits for the lock instead (SQLAlchemy's documented recipe,
"Serializable isolation / Savepoints / Transactional DDL" in its SQLite dialect docs), and
every connection waits up to 30 s for a lock (``PRAGMA busy_timeout``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def begin_immediate(engine: Engine) -> None:
    """Make Optuna's SQLite transactions take the write lock up front.

    With pysqlite's default deferred transactions, a transaction that reads and then writes
    fails at once with "database is locked" when another worker wrote in between; with
    ``BEGIN IMMEDIATE`` it waits for the lock instead (SQLAlchemy's documented recipe).
    """

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.engine.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()
