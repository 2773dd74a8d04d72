"""What every cluster launcher shares: the resolved sweep and one worker's command line.

A launcher resolves the spec once, where the user typed the command (the name, the total,
the storage URL), and ships the spec's *text* to the workers, so a node needs no copy of
the file, only the installed package and any user task module. Each worker is the
ordinary ``sweeps worker`` command, given the sweep's name and total explicitly; the
storage URL travels in ``SWEEPS_STORAGE`` (never on a command line, where ``ps`` on a
shared node would show the password), together with the heartbeat settings of the
launching shell (``SWEEPS_HEARTBEAT_INTERVAL``, ``SWEEPS_GRACE_PERIOD``,
``SWEEPS_MAX_RETRY``), so every worker of one sweep judges dead workers alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from storage.engine import DEFAULT_URL, STORAGE_ENV_VAR, hide_password, normalize_url
from sweeps.devices import THREADS_ENV_VAR
from sweeps.errors import SweepUsageError
from sweeps.samplers import WORKER_INDEX_ENV_VAR
from sweeps.sweep_study import GRACE_ENV_VAR, HEARTBEAT_ENV_VAR, MAX_RETRY_ENV_VAR

FORWARDED_SETTINGS: Final = (HEARTBEAT_ENV_VAR, GRACE_ENV_VAR, MAX_RETRY_ENV_VAR)
"""The launching shell's variables every worker gets (when they are set)."""


@dataclass(frozen=True)
class SweepLaunch:
    """One sweep to launch: its spec text, resolved name, database, worker count.

    ``n_trials`` is the command line's total, if given (else the spec's, or the total the
    sweep already has, as for ``sweeps run``). Picklable, so an engine can carry it to its
    nodes.
    """

    spec_text: str
    name: str
    n_trials: int | None
    storage_url: str
    workers: int | None
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def shown_url(self) -> str:
        """The storage URL with its password hidden (for messages and dry runs)."""
        return hide_password(self.storage_url)

    def worker_arguments(self, spec_file: str | Path, device: str) -> list[str]:
        """``sweeps worker``'s arguments (after the program name) for one worker."""
        arguments = ["worker", str(spec_file), "--name", self.name, "--device", device]
        if self.n_trials is not None:
            arguments += ["--n-trials", str(self.n_trials)]
        return arguments

    def worker_environment(self, *, index: int, threads: int | None = None) -> dict[str, str]:
        """The variables one worker runs with on top of its node's environment."""
        environment = {STORAGE_ENV_VAR: self.storage_url, WORKER_INDEX_ENV_VAR: str(index)}
        environment.update(self.settings)
        if threads is not None:
            environment[THREADS_ENV_VAR] = str(threads)
            environment["OMP_NUM_THREADS"] = str(threads)
        return environment


def prepare_launch(
    spec_path: Path,
    *,
    storage: str | None,
    name: str | None,
    n_trials: int | None,
    workers: int | None,
) -> SweepLaunch:
    """Read and validate the spec with the command line's overrides; resolve the storage.

    The storage is ``storage``, else ``$SWEEPS_STORAGE``, else the spec's, else
    ``sqlite:///sweeps.db`` (as for ``sweeps run``); a relative SQLite path is made
    absolute here, since an engine's workers start in folders of their own.

    Raises:
        SweepUsageError: a bad spec, or ``workers`` / ``n_trials`` below 1.
    """
    from sweeps.spec import load_spec

    for option, value in (("--workers", workers), ("--n-trials", n_trials)):
        if value is not None and value < 1:
            raise SweepUsageError(f"{option} must be at least 1, got {value}.")
    spec = load_spec(spec_path, n_trials=n_trials, name=name)
    url = storage or os.environ.get(STORAGE_ENV_VAR) or spec.storage or DEFAULT_URL
    settings = {key: os.environ[key] for key in FORWARDED_SETTINGS if os.environ.get(key)}
    return SweepLaunch(
        spec_text=spec_path.read_text(encoding="utf-8"),
        name=spec.name,
        n_trials=n_trials,
        storage_url=_absolute_sqlite(normalize_url(url)),
        workers=workers,
        settings=settings,
    )


def _absolute_sqlite(url: str) -> str:
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    database = parsed.database
    if not parsed.drivername.startswith("sqlite") or not database or database == ":memory:":
        return url
    if database.startswith("file:") or Path(database).is_absolute():
        return url
    return parsed.set(database=str(Path(database).resolve())).render_as_string(hide_password=False)
