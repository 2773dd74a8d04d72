"""The exceptions ``storage`` raises.

:class:`StorageUsageError` is a mistake in what the user asked for (an unknown sweep, a
malformed URL, an unsupported export format): the CLI exits 2. :class:`StorageError` is
a runtime failure (an unreachable server, a database that needs upgrading, a failed
write): the CLI exits 1. Messages are one sentence and never contain a password.
"""

from __future__ import annotations


class StorageError(RuntimeError):
    """A runtime failure of the results database (CLI exit status 1)."""


class StorageUnavailableError(StorageError):
    """The database server cannot be reached or refused the connection."""


class SchemaOutdatedError(StorageError):
    """The database was written by an older schema; ``sweeps db upgrade`` fixes it."""


class StorageUsageError(ValueError):
    """A bad request: unknown sweep, malformed URL, unsupported format (CLI exit status 2)."""


class DatabaseNotFoundError(StorageUsageError):
    """A read named a database that does not exist or holds no sweep results."""


class SweepNotFoundError(StorageUsageError):
    """No sweep of that name is stored in the database."""


class TrialRunNotFoundError(StorageUsageError):
    """No trial run has the given id."""
