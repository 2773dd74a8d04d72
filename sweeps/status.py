"""``sweeps status``: how far a sweep is, from any machine that can reach its database."""

from __future__ import annotations

import json
from typing import Any

from sweeps.progress import SweepSnapshot, diverged_value, format_value, snapshot
from sweeps.sweep_study import load_existing_study


def sweep_status(name: str, url: str) -> SweepSnapshot:
    """The current state of the sweep ``name`` stored at ``url``.

    Raises:
        SweepNotFoundError: no sweep of that name there.
        StorageUnavailableError: the database cannot be reached.
    """
    study = load_existing_study(name, url)
    try:
        return snapshot(study)
    finally:
        storage: Any = study._storage
        getattr(storage, "_backend", storage).engine.dispose()


def status_json(snap: SweepSnapshot) -> str:
    return json.dumps(snap.to_json(), indent=2, sort_keys=True)


def status_table(snap: SweepSnapshot) -> Any:
    """A rich renderable: trial counts by state, then the best value per optimizer."""
    from rich.console import Group
    from rich.table import Table

    total = snap.n_trials if snap.n_trials is not None else "no limit"
    counts = Table(title=f"Sweep {snap.name}: {snap.finished} of {total} finished", min_width=44)
    counts.add_column("state")
    counts.add_column("trials", justify="right")
    for state in ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL"):
        counts.add_row(state, str(snap.counts.get(state, 0)))
    best = Table(title=f"Best value per optimizer ({snap.direction})")
    best.add_column("optimizer")
    best.add_column("value", justify="right")
    best.add_column("trial", justify="right")
    best.add_column("parameters")
    for name, run in sorted(snap.best.items()):
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(run.params.items()))
        best.add_row(name, format_value(run.value, snap.direction), str(run.trial_number), params)
    parts: list[Any] = [counts, best]
    if snap.workers:
        parts.append(f"Running on: {', '.join(snap.workers)}")
    if snap.diverged:
        parts.append(f"{snap.diverged} run(s) diverged (value {diverged_value(snap.direction)}).")
    return Group(*parts)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
