"""The exceptions the sweep service raises.

:class:`SweepUsageError` (and :class:`SpecError`) are mistakes in what the user gave: a
malformed spec, an unknown task, a bad option value; the CLI exits 2. :class:`SweepError`
is a runtime failure (a worker crashed, a study cannot be loaded); the CLI exits 1.
"""

from __future__ import annotations


class SweepUsageError(ValueError):
    """A bad spec, task name or option value (CLI exit status 2)."""


class SpecError(SweepUsageError):
    """A sweep spec that cannot be used; the message names the key."""


class SweepError(RuntimeError):
    """A runtime failure of the sweep service (CLI exit status 1)."""
