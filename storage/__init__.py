"""The results database of the sweeps: SQLite by default, PostgreSQL at scale.

- :mod:`storage.models`: the ``ms_`` tables (SQLAlchemy 2.0 typed ORM).
- :mod:`storage.engine`: URLs, engines and sessions (``create_engine``, ``session_factory``).
- :mod:`storage.schema`: Alembic migrations (``upgrade``, ``ensure_current``).
- :mod:`storage.records`: writes (``add_trial_run``, ``record_epoch``, ...).
- :mod:`storage.queries`: reads as pandas DataFrames (``trials_frame``, ``metrics_frame``).
"""

from __future__ import annotations

from typing import Any

_QUERIES = ("trials_frame", "metrics_frame", "sweeps_frame")


def __getattr__(name: str) -> Any:
    """``storage.trials_frame`` etc., imported on first use (pandas is a slow import)."""
    if name in _QUERIES:
        from storage import queries

        return getattr(queries, name)
    raise AttributeError(f"module 'storage' has no attribute {name!r}")


__all__ = ["metrics_frame", "sweeps_frame", "trials_frame"]
