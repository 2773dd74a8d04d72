"""Alembic environment of the ``ms_`` tables (run by :mod:`storage.schema`, not by hand).

The caller passes an open connection in ``config.attributes["connection"]``; the revision
is kept in ``ms_alembic_version`` so that it never collides with the ``alembic_version``
table of Optuna's own storage in the same database.
"""

from __future__ import annotations

from alembic import context

from storage.models import Base
from storage.schema import VERSION_TABLE


def _include_name(name: str | None, type_: str, _parent_names: object) -> bool:
    """Only our tables: Optuna's tables share the database and are not ours to migrate."""
    return type_ != "table" or (name is not None and name.startswith("ms_"))


connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    include_name=_include_name,
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
